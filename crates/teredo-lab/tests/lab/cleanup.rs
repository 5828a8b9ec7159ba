//! Cleanup: after a lab is dropped, normally or while a panic unwinds, none of its
//! namespaces, none of the processes started in them and none of its NAT threads remain.

use std::panic::{AssertUnwindSafe, catch_unwind};

use teredo_lab::daemon::process_alive;
use teredo_lab::{Lab, NatKind, netns};

use crate::TestResult;

/// Builds a lab with a few nodes and two long-running processes (one held by a
/// [`teredo_lab::Daemon`] guard that outlives the lab, one forgotten by its guard), and
/// returns the lab with the namespaces' prefix and the pids.
fn populated(name: &str) -> Result<(Lab, teredo_lab::Daemon, Vec<u32>), Box<dyn std::error::Error>> {
    let mut lab = Lab::new(name)?;
    let server = lab.server()?;
    let client = lab.client_behind(NatKind::Symmetric)?;
    let held = client.spawn("sleeper", "sleep", &["600"])?;
    let forgotten = server.spawn("sleeper", "sh", &["-c", "sleep 600 & sleep 600"])?;
    let mut pids: Vec<u32> = held.pid().into_iter().collect();
    pids.extend(forgotten.pid());
    // A guard that is leaked never runs its Drop: the lab must still kill the process.
    std::mem::forget(forgotten);
    pids.extend(server.pids()?);
    Ok((lab, held, pids))
}

fn assert_gone(prefix: &str, pids: &[u32]) -> TestResult {
    let left: Vec<String> =
        netns::list_namespaces()?.into_iter().filter(|n| n.starts_with(&format!("{prefix}-"))).collect();
    if !left.is_empty() {
        return Err(format!("namespaces left behind: {left:?}").into());
    }
    let alive: Vec<u32> = pids.iter().copied().filter(|p| process_alive(*p)).collect();
    if !alive.is_empty() {
        return Err(format!("processes left behind: {alive:?}").into());
    }
    Ok(())
}

fn lab_or_skip(name: &str) -> bool {
    lab_or_skip_needs(name, &[])
}

fn lab_or_skip_needs(name: &str, extra: &[&str]) -> bool {
    let mut needs = vec!["sleep", "sh"];
    needs.extend_from_slice(extra);
    match teredo_lab::check_requirements(&needs) {
        Ok(()) => true,
        Err(e) if teredo_lab::under_ci() => panic!("{name} cannot run under CI=true: {e}"),
        Err(e) => {
            teredo_lab::skip_message(name, &e);
            false
        }
    }
}

#[test]
fn cleanup_after_drop() -> TestResult {
    if !lab_or_skip("cleanup-drop") {
        return Ok(());
    }
    let (lab, held, pids) = populated("cleanup-drop")?;
    let prefix = lab.prefix().to_owned();
    let artifacts = lab.artifacts_dir().to_owned();
    if pids.len() < 3 {
        return Err(format!("expected at least 3 pids, got {pids:?}").into());
    }
    drop(lab);
    assert_gone(&prefix, &pids)?;
    drop(held);
    let keep_all = std::env::var("TEREDO_LAB_KEEP").is_ok_and(|v| v == "1");
    if artifacts.exists() && !keep_all {
        return Err(format!("artifacts of a passing lab kept: {}", artifacts.display()).into());
    }
    Ok(())
}

#[test]
fn cleanup_after_panic() -> TestResult {
    if !lab_or_skip("cleanup-panic") {
        return Ok(());
    }
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let (lab, held, pids) = populated("cleanup-panic").expect("building the lab");
        seen = Some((lab.prefix().to_owned(), lab.artifacts_dir().to_owned(), pids));
        let _keep_alive = (&lab, &held);
        panic!("deliberate panic inside a lab test (expected)");
    }));
    if result.is_ok() {
        return Err("the closure did not panic".into());
    }
    let (prefix, artifacts, pids) = seen.ok_or("the lab was not built")?;
    assert_gone(&prefix, &pids)?;
    // A failing test keeps its artifacts; this one failed on purpose, so tidy up.
    if !artifacts.exists() {
        return Err("artifacts of a failed lab were not kept".into());
    }
    std::fs::remove_dir_all(&artifacts)?;
    Ok(())
}

/// A lab with a UPnP NAT built on the userland NAT: after it is dropped, `miniupnpd`, the
/// userland NAT's thread and the namespaces are gone.
#[test]
fn cleanup_of_nat_services() -> TestResult {
    let kind = NatKind::UpnpPortSymmetric;
    if !lab_or_skip_needs("cleanup-nat-services", kind.programs()) {
        return Ok(());
    }
    let mut lab = Lab::new("cleanup-nat-services")?;
    let nat = lab.nat(kind)?;
    let prefix = lab.prefix().to_owned();
    let pids = nat.pids()?;
    if pids.is_empty() {
        return Err("no miniupnpd in the NAT namespace".into());
    }
    if !nat.userland_running() {
        return Err("the userland NAT does not run while the lab lives".into());
    }
    drop(lab);
    assert_gone(&prefix, &pids)?;
    if nat.userland_running() {
        return Err("the userland NAT still runs after the lab was dropped".into());
    }
    Ok(())
}

/// Programs whose processes must never run in the machine's own network namespace.
const HOST_FORBIDDEN: &[&str] = &["miredo", "miniupnpd"];

/// No Miredo and no `miniupnpd` runs in the machine's own network namespace: the
/// packages' services stay off (`.ci/install-deps`), and lab daemons live in lab
/// namespaces only.
#[test]
fn no_miredo_outside_the_lab() -> TestResult {
    let host_ns = std::fs::read_link("/proc/self/ns/net")?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !HOST_FORBIDDEN.iter().any(|p| comm.trim().starts_with(p)) {
            continue;
        }
        // A process that has just left `ip netns exec` (or exited) may vanish meanwhile.
        if std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns == host_ns) {
            found.push(format!("{pid} ({})", comm.trim()));
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("{HOST_FORBIDDEN:?} run in the host namespace: {found:?} (see .ci/install-deps)").into())
    }
}

/// A lab test whose requirements are missing is skipped with a message, except under
/// `CI=true`, where it fails; it never passes silently after running nothing.
#[test]
fn missing_requirements_skip_or_fail() {
    let mut ran = false;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        teredo_lab::run("never-runs", &["teredo-lab-no-such-program"], |_lab: &mut Lab| {
            ran = true;
            Ok::<(), String>(())
        });
    }));
    assert!(!ran, "the test body ran without its requirements");
    assert_eq!(outcome.is_err(), teredo_lab::under_ci(), "skip outside CI, failure under CI=true");
}

/// Namespaces left by a test process that died without unwinding (SIGKILL) are removed
/// by the next lab.
#[test]
fn stale_namespaces_are_removed() -> TestResult {
    if !lab_or_skip("stale-namespaces") {
        return Ok(());
    }
    // No process has this pid (beyond the kernel's maximum), so the namespace is stale.
    let stale = format!("{}99999999-0-stale{}", netns::NS_PREFIX, std::process::id());
    let status = std::process::Command::new("ip").args(["netns", "add", &stale]).status()?;
    if !status.success() {
        return Err(format!("ip netns add {stale}: {status}").into());
    }
    let removed = netns::remove_stale();
    let left = netns::list_namespaces()?.contains(&stale);
    if left {
        let _ = std::process::Command::new("ip").args(["netns", "del", &stale]).status();
    }
    let removed = removed?;
    if left || !removed.contains(&stale) {
        return Err(format!("{stale} was not removed (removed: {removed:?})").into());
    }
    Ok(())
}
