//! Running a Miredo client hook script (`ClientHook /etc/miredo/client-hook`) with exactly
//! the interface Miredo's privproc gives it (miredo-facts §1.8):
//!
//! | variable | when | value |
//! |---|---|---|
//! | `STATE` | always | `up`, `down`, or `destroy` (last run only) |
//! | `OLD_STATE` | always | state of the previous run: `down` at first |
//! | `IFACE`, `IFINDEX` | always | interface name (looked up again each run), index |
//! | `ADDRESS`, `LLADDRESS`, `MTU` | STATE=up | Teredo address, link-local, MTU |
//! | `OLD_ADDRESS`, `OLD_LLADDRESS`, `OLD_MTU` | previous run was up | previous values |
//!
//! Nothing else is in the environment: no inherited variable and, as in Miredo, no `PATH`
//! (the shipped scripts call `/sbin/ip`, `/sbin/ifconfig` by absolute path). The script
//! gets no arguments, stdin from /dev/null, stdout and stderr on our stderr, default signal
//! dispositions and an empty signal mask. Its exit status is returned (−1 when a signal
//! killed it). A script that runs longer than [`HOOK_TIMEOUT`] is killed.
//!
//! The environment is built by [`HookRunner::environment`], a pure function, so the exact
//! variables of every sequence are unit-tested.

use std::io;
use std::net::Ipv6Addr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client_if::link_local_for;

/// How long a hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// The state a hook run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    /// Qualified with this address and MTU.
    Up {
        /// The Teredo address.
        address: Ipv6Addr,
        /// The MTU.
        mtu: u16,
    },
    /// Not qualified (connectivity lost, or shutting down).
    Down,
    /// The very last run, after the final `Down`.
    Destroy,
}

impl HookState {
    /// The `STATE` value.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Up { .. } => "up",
            Self::Down => "down",
            Self::Destroy => "destroy",
        }
    }
}

/// Why a hook could not be run.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The interface has no name any more (Miredo reports −1).
    #[error("interface #{ifindex}: {source}")]
    Interface {
        /// The index.
        ifindex: u32,
        /// The error.
        source: io::Error,
    },
    /// The script could not be started.
    #[error("cannot run {path}: {source}")]
    Spawn {
        /// The script.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Waiting for the script failed.
    #[error("waiting for {path}: {source}")]
    Wait {
        /// The script.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Runs one hook script for one interface, remembering the previous run for `OLD_*`.
#[derive(Debug, Clone)]
pub struct HookRunner {
    path: PathBuf,
    ifindex: u32,
    previous: HookState,
    timeout: Duration,
}

impl HookRunner {
    /// A runner for the script at `path` and the interface `ifindex`; the previous state
    /// starts as `down`.
    pub fn new(path: impl Into<PathBuf>, ifindex: u32) -> Self {
        Self { path: path.into(), ifindex, previous: HookState::Down, timeout: HOOK_TIMEOUT }
    }

    /// Changes the timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The script.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The environment of a run for `state` on the interface named `iface`, given the
    /// previous run; in Miredo's order of definition.
    pub fn environment(&self, state: HookState, iface: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("STATE".to_owned(), state.name().to_owned()),
            ("OLD_STATE".to_owned(), self.previous.name().to_owned()),
            ("IFACE".to_owned(), iface.to_owned()),
            ("IFINDEX".to_owned(), self.ifindex.to_string()),
        ];
        if let HookState::Up { address, mtu } = state {
            env.push(("ADDRESS".to_owned(), address.to_string()));
            env.push(("LLADDRESS".to_owned(), link_local_for(address).to_string()));
            env.push(("MTU".to_owned(), mtu.to_string()));
        }
        if let HookState::Up { address, mtu } = self.previous {
            env.push(("OLD_ADDRESS".to_owned(), address.to_string()));
            env.push(("OLD_LLADDRESS".to_owned(), link_local_for(address).to_string()));
            env.push(("OLD_MTU".to_owned(), mtu.to_string()));
        }
        env
    }

    /// Runs the script for `state` and waits for it; returns its exit status (−1 when a
    /// signal ended it, or when it was killed after the timeout). The state becomes the
    /// previous one whatever the outcome, as in Miredo.
    pub fn run(&mut self, state: HookState) -> Result<i32, HookError> {
        let result = self.run_once(state);
        self.previous = match state {
            HookState::Destroy => HookState::Down,
            s => s,
        };
        result
    }

    fn run_once(&self, state: HookState) -> Result<i32, HookError> {
        let iface = crate::tun::name_of(self.ifindex)
            .map_err(|source| HookError::Interface { ifindex: self.ifindex, source })?;
        let env = self.environment(state, &iface);
        let spawn_err = |source| HookError::Spawn { path: self.path.clone(), source };
        let stdout = dup_stderr().map_err(spawn_err)?;
        let mut cmd = Command::new(&self.path);
        cmd.env_clear().envs(env).stdin(Stdio::null()).stdout(stdout).stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls (sigaction, sigprocmask) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let wait_err = |source| HookError::Wait { path: self.path.clone(), source };
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = child.try_wait().map_err(wait_err)? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                tracing::warn!("{}: still running after {:?}; killing it", self.path.display(), self.timeout);
                let _ = child.kill();
                let status = child.wait().map_err(wait_err)?;
                return Ok(status.code().unwrap_or_else(|| if status.signal().is_some() { -1 } else { 1 }));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

fn dup_stderr() -> io::Result<Stdio> {
    use std::os::fd::AsFd;
    Ok(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Advances the runner as `run` would, without running anything.
    fn step(r: &mut HookRunner, s: HookState) -> Vec<(String, String)> {
        let e = r.environment(s, "teredo");
        r.previous = if s == HookState::Destroy { HookState::Down } else { s };
        e
    }

    #[test]
    fn miredo_sequence_up_up_down_destroy() {
        let mut r = HookRunner::new("/etc/miredo/client-hook", 7);
        let a1 = a("2001:0:c000:201:1234:63bf:3fff:fdd2");
        let a2 = a("2001:0:c000:201:0:63bf:3fff:fdd3");
        assert_eq!(
            step(&mut r, HookState::Up { address: a1, mtu: 1400 }),
            env(&[
                ("STATE", "up"),
                ("OLD_STATE", "down"),
                ("IFACE", "teredo"),
                ("IFINDEX", "7"),
                ("ADDRESS", "2001:0:c000:201:1234:63bf:3fff:fdd2"),
                ("LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("MTU", "1400"),
            ])
        );
        assert_eq!(
            step(&mut r, HookState::Up { address: a2, mtu: 1280 }),
            env(&[
                ("STATE", "up"),
                ("OLD_STATE", "up"),
                ("IFACE", "teredo"),
                ("IFINDEX", "7"),
                ("ADDRESS", "2001:0:c000:201:0:63bf:3fff:fdd3"),
                ("LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("MTU", "1280"),
                ("OLD_ADDRESS", "2001:0:c000:201:1234:63bf:3fff:fdd2"),
                ("OLD_LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("OLD_MTU", "1400"),
            ])
        );
        assert_eq!(
            step(&mut r, HookState::Down),
            env(&[
                ("STATE", "down"),
                ("OLD_STATE", "up"),
                ("IFACE", "teredo"),
                ("IFINDEX", "7"),
                ("OLD_ADDRESS", "2001:0:c000:201:0:63bf:3fff:fdd3"),
                ("OLD_LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("OLD_MTU", "1280"),
            ])
        );
        // The final pair on shutdown.
        assert_eq!(
            step(&mut r, HookState::Down),
            env(&[("STATE", "down"), ("OLD_STATE", "down"), ("IFACE", "teredo"), ("IFINDEX", "7")])
        );
        assert_eq!(
            step(&mut r, HookState::Destroy),
            env(&[("STATE", "destroy"), ("OLD_STATE", "down"), ("IFACE", "teredo"), ("IFINDEX", "7")])
        );
    }

    #[test]
    fn destroy_straight_after_up_still_names_the_old_address() {
        let mut r = HookRunner::new("/x", 3);
        step(&mut r, HookState::Up { address: a("2001:0:102:304:8000:f227:bec9:1c35"), mtu: 1280 });
        let e = step(&mut r, HookState::Destroy);
        assert!(e.contains(&("OLD_STATE".into(), "up".into())));
        assert!(e.contains(&("OLD_LLADDRESS".into(), "fe80::8000:5445:5245:444f".into())));
        assert!(!e.iter().any(|(k, _)| k == "ADDRESS"));
    }

    #[test]
    fn run_reports_exit_status_and_missing_script() {
        let lo = crate::tun::index_of("lo").unwrap();
        let mut r = HookRunner::new("/bin/false", lo);
        assert_eq!(r.run(HookState::Down).unwrap(), 1);
        let mut r = HookRunner::new("/nonexistent/teredo-hook", lo);
        assert!(matches!(r.run(HookState::Down), Err(HookError::Spawn { .. })));
        let mut r = HookRunner::new("/bin/true", 0x7fff_fff0);
        assert!(matches!(r.run(HookState::Down), Err(HookError::Interface { .. })));
    }
}
