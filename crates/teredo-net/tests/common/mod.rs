//! Shared test harness for the root tests: run a test body in a forked child inside a
//! network namespace of its own (unshare(CLONE_NEWNET)), so the test process and the host
//! are never touched and the namespace disappears with the child, even on panic. The
//! namespace has no link to anything: nothing can leave it. Also reads the interface
//! state back with `ip -j`.
//!
//! When a root test cannot run (not root, no namespaces, no `ip`), it prints a SKIP line,
//! or fails loudly when CI=true.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::process::Command;

/// Seconds a namespace test may take before its child is killed.
const TIMEOUT_SECS: u32 = 60;

/// Reports a test that cannot run here.
pub fn cannot_run(test: &str, why: &str) {
    if teredo_net::under_ci() {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("SKIP {test}: {why}");
}

/// Serialises the tests of this binary (see [`in_new_netns`]); a test that failed while
/// holding it does not block the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `body` in a forked child in a fresh network namespace; fails the test with the
/// body's message if it fails or panics.
pub fn in_new_netns(test: &str, body: impl FnOnce() -> Result<(), String>) {
    // A forked child inherits every lock another thread of the test harness held at the
    // fork (stdout, the environment...): the tests of this binary run one at a time, so
    // that no other test thread is busy when one forks.
    let _serial = serial();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run(test, "not root");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return cannot_run(test, "no `ip` command (iproute2)");
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only runs the test body and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: fds[1] is ours; fds[0] is the parent's end.
        let mut w = unsafe {
            libc::close(fds[0]);
            libc::alarm(TIMEOUT_SECS);
            File::from_raw_fd(fds[1])
        };
        // SAFETY: plain system call.
        let code = if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let _ = write!(w, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            2
        } else {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
                Ok(Ok(())) => 0,
                Ok(Err(msg)) => {
                    let _ = w.write_all(msg.as_bytes());
                    1
                }
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "panic".into());
                    let _ = write!(w, "panicked: {msg}");
                    1
                }
            }
        };
        drop(w);
        // SAFETY: leave the child without running the test harness's code.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: fds[1] is the child's end; fds[0] is ours.
    let mut r = unsafe {
        libc::close(fds[1]);
        File::from_raw_fd(fds[0])
    };
    let mut msg = String::new();
    let _ = r.read_to_string(&mut msg);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        panic!("{test}: child killed by signal {} (timeout {TIMEOUT_SECS} s?) {msg}", libc::WTERMSIG(status));
    }
    match libc::WEXITSTATUS(status) {
        0 => {}
        2 => cannot_run(test, &msg),
        _ => panic!("{test}: {msg}"),
    }
}

/// Fails the body with a message unless `cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{}:{}: {}", file!(), line!(), format!($($fmt)+)));
        }
    };
}

/// `ip -j ARGS`, parsed.
pub fn ip_json(args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new("ip").arg("-j").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ip {args:?}: bad JSON: {e}"))
}

/// The IPv6 addresses of `dev`, as "address/len", sorted.
pub fn addresses(dev: &str) -> Result<Vec<String>, String> {
    let v = ip_json(&["-6", "addr", "show", "dev", dev])?;
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            out.push(format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]));
        }
    }
    out.sort();
    Ok(out)
}

/// The MTU and flags of `dev`.
pub fn link(dev: &str) -> Result<(u64, Vec<String>), String> {
    let v = ip_json(&["link", "show", "dev", dev])?;
    let l = &v[0];
    let flags =
        l["flags"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(str::to_owned)).collect();
    Ok((l["mtu"].as_u64().unwrap_or(0), flags))
}

/// Whether `dev` is administratively up.
pub fn is_up(dev: &str) -> Result<bool, String> {
    Ok(link(dev)?.1.iter().any(|f| f == "UP"))
}

/// The IPv6 routes through `dev` in the main table, as "destination metric N", sorted.
pub fn routes(dev: &str) -> Result<Vec<String>, String> {
    let v = ip_json(&["-6", "route", "show", "dev", dev])?;
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} metric {}", r["dst"].as_str().unwrap_or("?"), r["metric"]))
        .collect();
    out.sort();
    Ok(out)
}

/// The named field of /proc/PID/status.
pub fn proc_status(pid: i32, field: &str) -> Result<String, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    s.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_owned()))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))
}
