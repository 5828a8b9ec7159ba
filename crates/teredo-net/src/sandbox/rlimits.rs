//! Resource limits of a sandboxed process (setrlimit(2)): no core file (RLIMIT_CORE 0: a
//! core would hold keys and peers' addresses), no file grown (RLIMIT_FSIZE 0: nothing is
//! written to a file after start-up; not for a hook, see `crate::helper`), no new process where the role forks none
//! (RLIMIT_NPROC 0), and no more descriptors than are open plus the role's headroom
//! (RLIMIT_NOFILE).
//!
//! RLIMIT_NPROC counts threads too, per user, so a process that starts threads after the
//! sandbox (a client's resolver, UPnP) keeps its limit: for it the seccomp filter, which
//! lets `clone` make threads only, is what forbids new processes.

use std::io;

/// The limits to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_NPROC 0.
    pub no_process: bool,
    /// RLIMIT_FSIZE 0 (no file grows).
    pub no_file_writes: bool,
    /// RLIMIT_NOFILE: the highest open descriptor plus this many.
    pub descriptor_headroom: u64,
}

fn set(resource: libc::__rlimit_resource_t, value: u64, name: &'static str) -> io::Result<()> {
    let l = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: a valid rlimit structure.
    if unsafe { libc::setrlimit(resource, &l) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setrlimit({name}): {e}")));
    }
    Ok(())
}

/// The most descriptors [`highest_descriptor`] looks at.
const SCAN: i32 = 65536;

/// The highest descriptor open now (probed with fcntl, which needs no /proc: Landlock may
/// hide it).
pub fn highest_descriptor() -> u64 {
    // SAFETY: F_GETFD on any number only reads the descriptor table.
    (0..SCAN).rev().find(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).map_or(0, |fd| fd as u64)
}

/// Whether standard output or error is a regular file (a foreground daemon's log
/// redirected to a file), which RLIMIT_FSIZE 0 would stop with SIGXFSZ.
fn logs_to_a_file() -> bool {
    [1, 2].iter().any(|&fd| {
        // SAFETY: fstat fills a plain structure.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &mut st) } == 0) && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
    })
}

/// Sets the limits (see the module comment). RLIMIT_FSIZE is left alone when the logs go
/// to a regular file (said in the returned list of what was skipped).
pub fn apply(limits: Limits) -> io::Result<Vec<&'static str>> {
    let mut skipped = Vec::new();
    set(libc::RLIMIT_CORE, 0, "RLIMIT_CORE")?;
    if limits.no_file_writes {
        if logs_to_a_file() {
            skipped.push("RLIMIT_FSIZE (standard error is a file)");
        } else {
            set(libc::RLIMIT_FSIZE, 0, "RLIMIT_FSIZE")?;
        }
    }
    if limits.no_process {
        set(libc::RLIMIT_NPROC, 0, "RLIMIT_NPROC")?;
    }
    let mut hard = libc::rlimit { rlim_cur: 0, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: getrlimit fills a plain structure.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    let nofile = (highest_descriptor() + 1 + limits.descriptor_headroom).min(hard.rlim_max);
    set(libc::RLIMIT_NOFILE, nofile, "RLIMIT_NOFILE")?;
    Ok(skipped)
}
