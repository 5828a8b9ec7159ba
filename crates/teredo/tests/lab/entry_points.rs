//! The Miredo entry points of the package in the lab, started exactly as Debian starts
//! Miredo: `/usr/sbin/miredo -f` (the `ExecStart` of Debian's miredo.service) and
//! `/usr/sbin/miredo-server -f`, with no other argument, so with Miredo's defaults: the
//! configuration file `/etc/miredo/miredo.conf` (or `miredo-server.conf`), Debian's hook
//! `/etc/miredo/client-hook` and the user `miredo`. So that those defaults are the lab's
//! and never this machine's (Debian's file points at a public server), each daemon runs
//! in a mount namespace of its own where a directory of the lab's is mounted over
//! `/etc/miredo`: the lab's configuration, and Debian's hook copied unchanged behind a
//! wrapper that records the environment of each run.
//!
//! - `miredo` qualifies against Debian's `miredo-server`, its interface configured by
//!   Debian's hook run with Miredo's environment, its packet path running as `miredo`;
//! - `miredo-server` serves Debian's Miredo client.
//!
//! The entry points are those of an extracted package when `TEREDO_ENTRY_DIR` names its
//! root (`scripts/package-test` sets it: `DIR/usr/sbin/miredo`...), else links to this
//! build's `teredo`.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Daemon, Lab, NatKind, Node};

use crate::{MIREDO_NEEDS, TEREDO, TestResult, WAIT, check_qualified, ensure, status_field, thread_status};

/// Debian's client hook.
const DEBIAN_HOOK: &str = "/etc/miredo/client-hook";

/// The directory holding `usr/sbin/miredo`, `miredo-server` and `miredo-checkconf`.
fn entry_root(lab: &Lab) -> TestResult<PathBuf> {
    if let Some(dir) = std::env::var_os("TEREDO_ENTRY_DIR") {
        let dir = PathBuf::from(dir);
        ensure!(
            dir.join("usr/sbin/miredo").exists(),
            "TEREDO_ENTRY_DIR={}: no usr/sbin/miredo",
            dir.display()
        );
        return Ok(dir);
    }
    let dir = lab.artifacts_dir().join("entry-root");
    let sbin = dir.join("usr/sbin");
    std::fs::create_dir_all(&sbin)?;
    for name in ["miredo", "miredo-server", "miredo-checkconf"] {
        let _ = std::fs::remove_file(sbin.join(name));
        symlink(TEREDO, sbin.join(name))?;
    }
    Ok(dir)
}

/// A directory to mount over `/etc/miredo` for `node`: `files` (name, contents), and
/// Debian's hook, unchanged as `client-hook.debian`, behind a `client-hook` that appends
/// its environment to `hook-env.txt` in the artifacts first. Returns it and the record.
fn etc_miredo(node: &Node, files: &[(&str, String)]) -> TestResult<(PathBuf, PathBuf)> {
    let dir = node.artifact_path("etc-miredo");
    std::fs::create_dir_all(&dir)?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    std::fs::copy(DEBIAN_HOOK, dir.join("client-hook.debian"))?;
    let record = node.write_artifact("hook-env.txt", "")?;
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666))?;
    let wrapper = dir.join("client-hook");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# Appends its environment to {rec}, then runs Debian's hook.\n\
             /usr/bin/env >> {rec}\necho '--- end of run' >> {rec}\nexec {DEBIAN_HOOK}.debian\n",
            rec = record.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok((dir, record))
}

/// Starts `program -f` in `node`, in a mount namespace of its own with `etc` mounted over
/// `/etc/miredo`.
fn start_as_debian(node: &Node, name: &str, etc: &Path, program: &Path) -> TestResult<Daemon> {
    let script = "mount --bind \"$0\" /etc/miredo && exec \"$1\" -f";
    let (etc, program) = (etc.to_string_lossy(), program.to_string_lossy());
    Ok(node.spawn(
        name,
        "unshare",
        &["--mount", "--propagation", "private", "sh", "-c", script, &etc, &program],
    )?)
}

/// The runs a recording hook wrote, one map per run, without the `PWD` of `/bin/sh`.
fn hook_runs(record: &Path) -> TestResult<Vec<BTreeMap<String, String>>> {
    let mut runs = Vec::new();
    let mut cur = BTreeMap::new();
    for line in std::fs::read_to_string(record)?.lines() {
        if line == "--- end of run" {
            runs.push(std::mem::take(&mut cur));
        } else if let Some((k, v)) = line.split_once('=')
            && k != "PWD"
        {
            cur.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(runs)
}

/// The uid of `user` in /etc/passwd.
fn uid_of(user: &str) -> TestResult<String> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user)).then(|| f.get(2).map(|u| (*u).to_owned())).flatten()
        })
        .ok_or_else(|| format!("no user {user} in /etc/passwd").into())
}

/// Checks that every thread of `pid` runs as `uid` (root is dropped for the whole daemon;
/// the client's helper is a process of its own).
fn check_runs_as(pid: u32, uid: &str, what: &str) -> TestResult {
    let threads = thread_status(pid)?;
    let as_user =
        threads.iter().filter(|(_, s)| status_field(s, "Uid").split_whitespace().all(|u| u == uid)).count();
    ensure!(as_user == threads.len(), "{what}: {as_user} of {} threads run as uid {uid}", threads.len());
    Ok(())
}

#[test]
fn miredo_entry_point_started_as_debian_qualifies() {
    teredo_lab::run("entry-miredo", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let root = entry_root(lab)?;
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _srv = miredo::start_server(&server)?;
        let conf = miredo::client_config(&server, IFACE);
        let (etc, record) = etc_miredo(&client, &[("miredo.conf", conf)])?;
        let d = start_as_debian(&client, "miredo-entry", &etc, &root.join("usr/sbin/miredo"))?;
        let (addr, _) = check_qualified(&client, server.primary)?;
        println!("{} -f (Debian's ExecStart) qualified as {addr}", root.join("usr/sbin/miredo").display());

        // Debian's hook configured the interface, run as Miredo runs it.
        teredo_lab::wait_for("the hook's first run", WAIT, || {
            hook_runs(&record).is_ok_and(|r| !r.is_empty())
        })?;
        let runs = hook_runs(&record)?;
        let first = &runs[0];
        let get = |k: &str| first.get(k).map(String::as_str);
        ensure!(get("STATE") == Some("up") && get("OLD_STATE") == Some("down"), "first hook run: {first:?}");
        ensure!(
            get("ADDRESS") == Some(addr.to_string().as_str()),
            "hook ADDRESS {:?}, address {addr}",
            get("ADDRESS")
        );
        ensure!(get("IFACE") == Some(IFACE) && get("LLADDRESS") == Some("fe80::ffff:ffff:ffff"), "{first:?}");
        ensure!(!first.contains_key("PATH"), "Miredo's hook runs without PATH: {first:?}");
        let routes = client.ip(&["-6", "route", "show", "default", "dev", IFACE])?;
        ensure!(routes.contains("metric 1029"), "Debian's hook's default route (metric 1029): {routes}");

        // Miredo's default user, and its default file in the status.
        let pid = d.pid().ok_or("miredo exited")?;
        check_runs_as(pid, &uid_of("miredo")?, "miredo's packet path")?;
        let status = client.exec(TEREDO, &["status", "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&status)?;
        let me = v.as_array().and_then(|a| a.first()).ok_or("no daemon in teredo status")?;
        ensure!(me["state"] == "qualified" && me["role"] == "client", "{me}");
        ensure!(me["config"] == "/etc/miredo/miredo.conf", "the daemon read {}", me["config"]);
        Ok(())
    });
}

#[test]
fn miredo_server_entry_point_serves_a_miredo_client() {
    teredo_lab::run("entry-miredo-server", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let root = entry_root(lab)?;
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::AddressRestricted)?;
        let (etc, _) = etc_miredo(&server, &[("miredo-server.conf", miredo::server_config(&server))])?;
        let d = start_as_debian(&server, "miredo-server-entry", &etc, &root.join("usr/sbin/miredo-server"))?;
        d.wait_log("Teredo server on", WAIT)?;
        let _cli = miredo::start_client(&client, &server, IFACE)?;
        let (addr, _) = check_qualified(&client, server.primary)?;
        println!(
            "Debian's miredo qualified as {addr} with {} -f",
            root.join("usr/sbin/miredo-server").display()
        );
        let pid = d.pid().ok_or("miredo-server exited")?;
        check_runs_as(pid, &uid_of("miredo")?, "miredo-server's packet path")?;
        let v: serde_json::Value = serde_json::from_str(&server.exec(TEREDO, &["status", "--json"])?)?;
        let me = v.as_array().and_then(|a| a.first()).ok_or("no daemon in teredo status")?;
        ensure!(me["role"] == "server" && me["config"] == "/etc/miredo/miredo-server.conf", "{me}");
        Ok(())
    });
}
