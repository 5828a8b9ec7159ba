//! The sandbox every process of teredo enters once its start-up is over (Linux): the
//! daemon of each role (client, relay, server) and the client's or relay's privileged
//! helper, each with its own list.
//!
//! - [`restrict_files`]: Landlock ([`landlock`]), file access cut down to what reload,
//!   the name service, a hook and syslog need; entered before the process starts threads;
//! - [`enter`]: not dumpable (PR_SET_DUMPABLE 0: no ptrace by the same user, no core, no
//!   /proc/PID/mem), the resource limits ([`rlimits`]), no new privileges
//!   (PR_SET_NO_NEW_PRIVS), then the seccomp filter of the process's [`Kind`]
//!   (module `seccomp`) on every thread at once;
//! - [`denied`]: how many calls the filter refused ([`sigsys`]), which the daemon shows
//!   in its status and logs when it grows.
//!
//! On other systems [`enter`] and [`restrict_files`] do nothing and say so.

#[cfg(target_os = "linux")]
pub mod landlock;
pub mod rlimits;
#[cfg(target_os = "linux")]
mod seccomp;
pub mod sigsys;

use std::io;

pub use rlimits::Limits;
pub use sigsys::denied;

/// Which list a process gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A daemon's packet plane and control thread (client, relay, server).
    Daemon,
    /// The privileged helper that configures the interface itself (netlink).
    Helper,
    /// The privileged helper that runs a hook script (see `seccomp::HOOK_DENIED`).
    HookHelper,
}

/// What [`enter`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entered {
    /// Whether the seccomp filter is on.
    pub seccomp: bool,
    /// What was left out, and why (for the log).
    pub skipped: Vec<&'static str>,
}

/// Restricts file access (Landlock) for the calling thread and the threads it starts
/// afterwards.
#[cfg(target_os = "linux")]
pub fn restrict_files(paths: &landlock::Paths) -> io::Result<landlock::Outcome> {
    landlock::restrict(paths)
}

/// Enters the sandbox of `kind`: not dumpable, `limits`, no new privileges, and unless
/// `seccomp` is false the filter, on every thread.
pub fn enter(kind: Kind, limits: Limits, seccomp: bool) -> io::Result<Entered> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let skipped = rlimits::apply(limits)?;
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut entered = Entered { seccomp: false, skipped };
        if seccomp {
            let programs = seccomp::programs(kind)?;
            if sigsys::TRAP_SUPPORTED {
                sigsys::install()?;
            } else {
                entered
                    .skipped
                    .push("SIGSYS reports (this architecture: denied calls fail with EPERM, uncounted)");
            }
            seccomp::apply(&programs)?;
            entered.seccomp = true;
        } else {
            entered.skipped.push("seccomp (turned off)");
        }
        Ok(entered)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (kind, seccomp);
        rlimits::apply(limits)?;
        Ok(Entered { seccomp: false, skipped: vec!["seccomp and Landlock (Linux only)"] })
    }
}

/// Makes a call that no list allows (mount(2) with no arguments; harmless without the
/// filter too: an unprivileged process gets EPERM), for the test that a denied call is
/// counted and the process lives on. Compiled only into debug builds. Returns the
/// call's errno.
#[cfg(debug_assertions)]
pub fn forbidden_call_for_tests() -> i32 {
    // SAFETY: mount with null arguments touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_mount, 0usize, 0usize, 0usize, 0usize, 0usize) };
    if r == 0 { 0 } else { io::Error::last_os_error().raw_os_error().unwrap_or(-1) }
}

#[cfg(all(
    test,
    debug_assertions,
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod tests {
    use super::*;

    #[test]
    fn a_denied_call_is_counted_and_fails_with_eperm() {
        // The filter is for good, so it goes on in a forked child that reports back.
        // SAFETY: the child runs only this test's code, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let limits = Limits { no_process: false, no_file_writes: false, descriptor_headroom: 16 };
            let code = match enter(Kind::Daemon, limits, true) {
                Ok(e) if e.seccomp => {
                    let errno = forbidden_call_for_tests();
                    // An allowed call still works.
                    // SAFETY: getpid cannot fail.
                    let alive = unsafe { libc::getpid() } > 0;
                    if errno == libc::EPERM && denied() == 1 && alive { 0 } else { 2 }
                }
                _ => 3,
            };
            // SAFETY: end the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:x}");
    }
}
