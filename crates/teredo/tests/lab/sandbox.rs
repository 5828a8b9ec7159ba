//! The sandbox of every role, checked as a user would from /proc (issue 11): a client (and
//! its privileged helper), a relay (and its helper) and a server, all teredo, the client
//! qualified and pinging a native host through the relay. Then:
//!
//! 1. every thread of every one of these processes shows `Seccomp: 2` and `NoNewPrivs: 1`
//!    in `/proc/PID/task/TID/status`; each process is not dumpable (its /proc files
//!    belongs to root although it runs as another user); `/proc/PID/limits` shows no core
//!    file, a small bound on open files, and no new process for the helpers; no root-owned
//!    regular file is open for writing (`/proc/PID/fd`, `/proc/PID/fdinfo`; standard streams
//!    aside, which are the caller's), the client's PID file included;
//! 2. traffic flows with the sandbox on, a reload (SIGHUP) re-reads the relay's file, and
//!    no daemon has had a call denied (`seccomp_denied` 0);
//! 3. a forbidden call made on purpose (the debug build's `test-forbidden-call` request
//!    on the control socket: mount(2)) fails with EPERM, is counted (`seccomp_denied` 1,
//!    `teredo_seccomp_denied_total` in the metrics), is reported on standard error with
//!    its number, and the client keeps running and forwarding.

use std::os::unix::fs::MetadataExt;

use teredo_lab::proc_stat::children_of;
use teredo_lab::{Daemon, Lab, NatKind, Node};

use crate::{
    TestResult, WAIT, check_qualified, counter, ensure, only, start_run, start_run_with, start_teredo_server,
    status_field, thread_status,
};

/// The most open files a daemon may be allowed (what it holds plus its headroom).
const MAX_NOFILE: u64 = 512;

/// A limit of `/proc/PID/limits`: (soft, hard), `u64::MAX` for unlimited.
fn limit(limits: &str, name: &str) -> TestResult<(u64, u64)> {
    let line =
        limits.lines().find(|l| l.starts_with(name)).ok_or_else(|| format!("no {name} in {limits}"))?;
    let words: Vec<&str> = line[name.len()..].split_whitespace().collect();
    let value = |w: &str| if w == "unlimited" { Ok(u64::MAX) } else { w.parse::<u64>() };
    Ok((value(words.first().copied().unwrap_or(""))?, value(words.get(1).copied().unwrap_or(""))?))
}

/// Checks the sandbox of process `pid` (see the module comment); `threads_later` says
/// whether it starts threads after start-up (RLIMIT_NPROC counts threads, so only its
/// seccomp filter, which lets clone make threads only, keeps it from forking). Returns how
/// many threads it has.
fn check_sandboxed(pid: u32, what: &str, threads_later: bool) -> TestResult<usize> {
    let threads = thread_status(pid)?;
    for (tid, status) in &threads {
        let name = status_field(status, "Name");
        let (seccomp, nnp) = (status_field(status, "Seccomp"), status_field(status, "NoNewPrivs"));
        println!("{what} thread {tid} ({name}): Seccomp {seccomp} NoNewPrivs {nnp}");
        ensure!(
            seccomp == "2" && nnp == "1",
            "{what} thread {tid} ({name}): Seccomp {seccomp}, NoNewPrivs {nnp}"
        );
    }
    let main = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status_field(&main, "Uid").split_whitespace().next().unwrap_or("").to_owned();
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))?.uid();
    println!("{what}: Uid {uid}, /proc/{pid}/status owned by {owner}");
    ensure!(
        uid != "0" && owner == 0,
        "{what} is dumpable: runs as {uid}, /proc/{pid}/status owned by {owner}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let core = limit(&limits, "Max core file size")?;
    let nofile = limit(&limits, "Max open files")?;
    let nproc = limit(&limits, "Max processes")?;
    println!("{what}: core {core:?}, open files {nofile:?}, processes {nproc:?}");
    ensure!(core == (0, 0), "{what}: core files allowed: {core:?}");
    ensure!(nofile.1 <= MAX_NOFILE, "{what}: up to {nofile:?} open files");
    if !threads_later {
        ensure!(nproc == (0, 0), "{what}: may start processes: {nproc:?}");
    }
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let fd = e.file_name().to_string_lossy().into_owned();
        // 0-2 are the caller's (here the lab's log file), not opened by the daemon.
        if matches!(fd.as_str(), "0" | "1" | "2") {
            continue;
        }
        let Ok(target) = std::fs::metadata(e.path()) else { continue };
        if !target.is_file() {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))?;
        let flags = u32::from_str_radix(status_field(&info, "flags"), 8)?;
        let writable = flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
        let link = std::fs::read_link(e.path())?;
        println!("{what}: fd {fd} -> {} (owner {}, flags {flags:o})", link.display(), target.uid());
        ensure!(
            !(writable && target.uid() == 0),
            "{what}: root-owned {} open for writing (fd {fd})",
            link.display()
        );
    }
    Ok(threads.len())
}

/// Sends one request to the control socket of daemon `pid` in `node` (an abstract socket
/// of its network namespace) and returns the answer.
fn control_request(node: &Node, pid: u32, request: &str) -> TestResult<serde_json::Value> {
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect('\\0teredo-control/{pid}')\n\
         s.sendall(b'{request}\\n')\nsys.stdout.write(s.makefile().readline())\n"
    );
    let out = node.exec("python3", &["-c", &script])?;
    Ok(serde_json::from_str(out.trim())?)
}

fn pid_of(d: &Daemon) -> TestResult<u32> {
    Ok(d.pid().ok_or_else(|| format!("{} is not running", d.name()))?)
}

#[test]
fn every_role_runs_sandboxed() {
    teredo_lab::run("sandbox", &["python3"], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let server_d = start_teredo_server(&server, &[])?;
        let relay_conf =
            |extra: &str| format!("RelayType cone\nInterfaceName {}\n{extra}", teredo_lab::miredo::IFACE);
        let relay_d = start_run(&relay, "relay", &relay_conf(""), &[])?;
        let pidfile = client.write_artifact("client.pid", "")?;
        let pidfile = pidfile.to_string_lossy().into_owned();
        let client_conf = format!(
            "RelayType client\nInterfaceName {}\nServerAddress {}\n",
            teredo_lab::miredo::IFACE,
            server.primary
        );
        let mut client_d = start_run_with(&client, "client", &client_conf, &[], &["-p", &pidfile])?;
        check_qualified(&client, server.primary)?;
        // Traffic after the sandbox: it is entered before the client even qualifies.
        client.wait_ping6(host.ipv6, WAIT)?;

        let (cpid, rpid, spid) = (pid_of(&client_d)?, pid_of(&relay_d)?, pid_of(&server_d)?);
        let client_helpers = children_of(cpid);
        let relay_helpers = children_of(rpid);
        ensure!(client_helpers.len() == 1, "client's children: {client_helpers:?}");
        ensure!(relay_helpers.len() == 1, "relay's children: {relay_helpers:?}");
        let mut total = 0;
        total += check_sandboxed(cpid, "client", true)?;
        total += check_sandboxed(client_helpers[0], "client's helper", false)?;
        total += check_sandboxed(rpid, "relay", true)?;
        total += check_sandboxed(relay_helpers[0], "relay's helper", false)?;
        total += check_sandboxed(spid, "server", true)?;
        println!("{total} threads in 5 processes: all with Seccomp 2 and NoNewPrivs 1");
        ensure!(
            std::fs::read_to_string(&pidfile)?.trim() == cpid.to_string(),
            "the PID file does not hold the client's PID"
        );

        // A reload re-reads the file under Landlock and seccomp.
        relay.write_artifact("relay.conf", &relay_conf("MaxPeers 1000\n"))?;
        relay_d.signal(libc::SIGHUP)?;
        relay_d.wait_log("MaxPeers is now 1000", WAIT)?;
        client_d.signal(libc::SIGHUP)?;
        client_d.wait_log("SIGHUP: reloading", WAIT)?;
        ensure!(client.ping6(host.ipv6, 3), "no ping through the tunnel after the reloads");
        for (node, what) in [(&*client as &Node, "client"), (&*relay, "relay"), (&*server, "server")] {
            let v = only(node, false)?;
            ensure!(
                v["counters"].get("seccomp_denied").is_some() && counter(&v, "seccomp_denied") == 0,
                "{what}: calls denied in normal operation: {v}"
            );
        }
        ensure!(!client_d.log().contains("seccomp: denied"), "client log: {}", client_d.log());

        // The forbidden call, on purpose.
        let answer = control_request(&client, cpid, "test-forbidden-call")?;
        println!("test-forbidden-call: {answer}");
        ensure!(answer["errno"] == libc::EPERM, "the forbidden call was not refused with EPERM: {answer}");
        let v = only(&client, false)?;
        ensure!(counter(&v, "seccomp_denied") == 1, "seccomp_denied after one forbidden call: {v}");
        let want = format!("teredo: seccomp: denied system call {}", libc::SYS_mount);
        client_d.wait_log(&want, WAIT)?;
        client_d.wait_log("seccomp denied 1 system call(s), 1 in all", WAIT)?;
        ensure!(
            client_d.is_running() && client_d.pid() == Some(cpid),
            "the client died of its forbidden call"
        );
        ensure!(client.ping6(host.ipv6, 3), "no ping through the tunnel after the forbidden call");
        // The same counter in the metrics' naming, through `teredo status`'s object.
        let text = teredo::daemon::metrics::encode_status(&only(&client, false)?);
        ensure!(text.contains("teredo_seccomp_denied_total 1\n"), "{text}");
        Ok(())
    });
}
