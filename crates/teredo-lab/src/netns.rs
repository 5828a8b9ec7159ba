//! Network namespaces: naming, creation, deletion (killing whatever still runs inside),
//! removal of namespaces left behind by test processes that died, and the check that the
//! lab can run on this machine at all.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cmd::{self, HOST, have_program, on_host};
use crate::daemon::process_alive;
use crate::error::{LabError, Result};

/// Every lab namespace starts with this, followed by `<pid>-<counter>-`.
pub const NS_PREFIX: &str = "tl-";

/// Programs the lab itself needs on every machine it runs on.
pub const REQUIRED_PROGRAMS: &[&str] = &["ip", "nft", "conntrack", "tcpdump", "ping", "sysctl"];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh prefix for one lab: `tl-<pid>-<n>`, unique within this machine while this
/// process lives.
pub(crate) fn new_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NS_PREFIX}{}-{n}", std::process::id())
}

/// The names of all network namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>> {
    let out = cmd::ip(&["netns", "list"])?;
    Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
}

/// Creates namespace `name`.
pub(crate) fn add(name: &str) -> Result<()> {
    cmd::ip(&["netns", "add", name]).map(drop)
}

/// The pids of the processes running in namespace `name`.
pub fn pids(name: &str) -> Result<Vec<u32>> {
    let out = cmd::ip(&["netns", "pids", name])?;
    Ok(out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
}

/// Kills (SIGKILL) every process still inside namespace `name`, then deletes it.
pub(crate) fn delete(name: &str) -> Result<()> {
    if let Ok(pids) = pids(name) {
        for pid in pids {
            if let Ok(p) = i32::try_from(pid) {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid was just
                // listed as running inside this lab's own namespace.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
    cmd::ip(&["netns", "del", name]).map(drop)
}

/// Deletes every namespace this process made (`tl-<own pid>-...`), killing what runs in
/// them: for a program interrupted by a signal, whose guards will not run. Returns their
/// names.
pub fn remove_own() -> Result<Vec<String>> {
    let own = format!("{NS_PREFIX}{}-", std::process::id());
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        if name.starts_with(&own) && delete(&name).is_ok() {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Deletes namespaces named `tl-<pid>-...` whose creating process no longer runs: the
/// leftovers of a test process that was killed before its guards ran. Returns their names.
pub fn remove_stale() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) && delete(&name).is_ok() {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Checks, once per process, that the lab can run here: root, the tools in
/// [`REQUIRED_PROGRAMS`], and a namespace can be created, used and deleted.
pub fn check_available() -> Result<()> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(probe).clone().map_err(LabError::Unavailable)
}

fn probe() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("network namespaces need Linux".into());
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!("it needs root (euid is {euid})"));
    }
    let missing: Vec<&str> = REQUIRED_PROGRAMS.iter().copied().filter(|p| !have_program(p)).collect();
    if !missing.is_empty() {
        return Err(format!("missing programs: {} (run .ci/install-deps)", missing.join(", ")));
    }
    let name = format!("{}-probe", new_prefix());
    add(&name).map_err(|e| format!("cannot create a network namespace: {e}"))?;
    let used = cmd::checked(on_host("ip").args(["-n", &name, "link", "set", "lo", "up"]), HOST);
    let deleted = delete(&name);
    used.map_err(|e| format!("cannot configure a network namespace: {e}"))?;
    deleted.map_err(|e| format!("cannot delete a network namespace: {e}"))?;
    Ok(())
}
