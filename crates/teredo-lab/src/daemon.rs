//! [`Daemon`]: a long-running process started inside a namespace, in its own process
//! group, with stdout and stderr appended to a log file. Dropping the guard stops the whole
//! group (SIGTERM, then SIGKILL after a bounded wait), so a failing test leaves nothing
//! running. It can also be stopped and started again to bring a service down and up.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::cmd::{describe, in_ns, on_host};
use crate::error::{LabError, Result};
use crate::proc_stat;
use crate::wait::{wait_for, wait_until};

/// How long [`Daemon::stop`] waits after SIGTERM before it sends SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A process running inside a lab namespace. See the module documentation.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    ns: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Started on the host rather than inside `ns` (a program that joins the namespace by
    /// itself, see [`Daemon::spawn_on_host`]).
    on_host: bool,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `program args` in namespace `ns`, logging to `log` (appended to).
    pub fn spawn(
        name: &str,
        ns: &str,
        program: &str,
        args: &[String],
        log: impl Into<PathBuf>,
    ) -> Result<Self> {
        Self::spawn_env(name, ns, program, args, &[], log)
    }

    /// Like [`Daemon::spawn`], with extra environment variables (e.g. `RUST_LOG`).
    pub fn spawn_env(
        name: &str,
        ns: &str,
        program: &str,
        args: &[String],
        env: &[(&str, &str)],
        log: impl Into<PathBuf>,
    ) -> Result<Self> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::start_new(name, ns, program, args, env, log.into(), false)
    }

    /// Starts `program args` on the host, in the machine's own namespaces, for a program
    /// that enters the lab namespace `ns` by itself (`systemd-nspawn
    /// --network-namespace-path=/run/netns/NS`, which needs the host's `/sys` that `ip
    /// netns exec` would hide); `ns` only names it in messages.
    pub fn spawn_on_host(
        name: &str,
        ns: &str,
        program: &str,
        args: &[String],
        log: impl Into<PathBuf>,
    ) -> Result<Self> {
        Self::start_new(name, ns, program, args, Vec::new(), log.into(), true)
    }

    /// The daemon of the `spawn*` constructors, started.
    fn start_new(
        name: &str,
        ns: &str,
        program: &str,
        args: &[String],
        env: Vec<(String, String)>,
        log: PathBuf,
        on_host: bool,
    ) -> Result<Self> {
        let mut d = Self {
            name: name.to_owned(),
            ns: ns.to_owned(),
            program: program.to_owned(),
            args: args.to_vec(),
            env,
            log,
            on_host,
            child: None,
        };
        d.start()?;
        Ok(d)
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace it runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The process id (also its process group id) while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file holding its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (lossy UTF-8; empty if it cannot be read).
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`, at most `timeout`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        wait_for(&format!("`{needle}` in the log of {} ({})", self.name, self.log.display()), timeout, || {
            self.log().contains(needle)
        })
    }

    /// Whether the main process is still running (it is reaped if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process again if it is not running (same command, same log).
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.child = None;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| LabError::io(format!("opening log {}", self.log.display()), e))?;
        let mut cmd = if self.on_host { on_host(&self.program) } else { in_ns(&self.ns, &self.program) };
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let line = describe(&cmd);
        // Best effort: a header that says what wrote the lines below it.
        let _ = writeln!(log, "=== lab: starting `{line}`");
        let err_log = clone_file(&log, &self.log)?;
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(err_log)).process_group(0);
        let child =
            cmd.spawn().map_err(|source| LabError::Spawn { cmd: line, ns: self.ns.clone(), source })?;
        self.child = Some(child);
        Ok(())
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the main process only.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let pid = self.pid_i32()?;
        send(pid, signal, &self.name)
    }

    /// Sends `signal` to the whole process group (the daemon and its children).
    pub fn signal_group(&self, signal: i32) -> Result<()> {
        let pid = self.pid_i32()?;
        send(-pid, signal, &self.name)
    }

    /// Stops the whole process group: SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL.
    /// Doing nothing when it is not running.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pgid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let mut gone = || {
            let main_done = !matches!(child.try_wait(), Ok(None));
            main_done && !group_alive(pgid)
        };
        if gone() {
            return Ok(());
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the target is the group we
        // created with process_group(0), whose leader we have not reaped yet.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        if wait_for("exit after SIGTERM", STOP_GRACE, &mut gone).is_ok() {
            return Ok(());
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        wait_for(&format!("{} (pid {pgid}) to die after SIGKILL", self.name), Duration::from_secs(3), gone)
    }

    /// Stops the daemon and starts it again.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Waits until the main process exits by itself, at most `timeout`; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let name = self.name.clone();
        let child = self.child.as_mut().ok_or_else(|| LabError::Invalid(format!("{name} is not running")))?;
        wait_until(&format!("{name} to exit"), timeout, || {
            child.try_wait().map_err(|e| LabError::io(format!("waiting for {name}"), e))
        })
    }

    fn pid_i32(&self) -> Result<i32> {
        self.pid()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| LabError::Invalid(format!("{} is not running", self.name)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("lab: stopping {}: {e}", self.name);
        }
    }
}

fn clone_file(f: &File, path: &Path) -> Result<File> {
    f.try_clone().map_err(|e| LabError::io(format!("duplicating log {}", path.display()), e))
}

fn send(target: i32, signal: i32, name: &str) -> Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(target, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(LabError::io(
            format!("sending signal {signal} to {name} ({target})"),
            std::io::Error::last_os_error(),
        ))
    }
}

/// Whether any live (non-zombie) process belongs to process group `pgid`.
pub(crate) fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            return false;
        };
        proc_stat::read(pid).is_some_and(|s| s.pgrp == pgid && s.alive())
    })
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    proc_stat::read(pid).is_some_and(|s| s.alive())
}
