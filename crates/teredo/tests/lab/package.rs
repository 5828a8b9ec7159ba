//! The installed package under systemd, in the lab: the Debian 12 root that
//! `scripts/package-test` made (Debian's miredo installed, then our package over it; its
//! path in `TEREDO_PACKAGE_ROOT`) boots in `systemd-nspawn` with systemd as PID 1, inside
//! a lab client's network namespace, behind a NAT, with `teredo server` on the lab server.
//! Miredo's `/etc/miredo.conf` is the one Debian installed, with its `ServerAddress` line
//! pointed at the lab server (the only change). A unit of the test's, started last at
//! boot, then checks as a user would: `systemd-analyze verify` of the installed units;
//! `miredo.service` is `teredo.service`; `systemctl start` returns with the unit active
//! only once the daemon is ready (its control socket answers at once); `teredo status`
//! shows the client qualified; `systemctl reload` keeps the process and the
//! qualification; `systemctl stop` removes the interface. Its results come back in a file
//! of the root, and the container powers itself off.
//!
//! Where the machine cannot boot a container, the test says why (nspawn's own words) and,
//! with `TEREDO_PACKAGE_BY_HAND=1`, runs the same steps with the unit's `ExecStart` and
//! `ExecReload` by hand, chrooted into the root (`TEREDO_PACKAGE_NO_NSPAWN=1` goes there
//! without trying nspawn).
//!
//! Ignored by `cargo test` (it needs the root that `scripts/package-test` prepares), which
//! runs it with `--ignored`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use teredo_lab::miredo::IFACE;
use teredo_lab::{Lab, NatKind, Node};

use crate::{TestResult, WAIT, check_qualified, ensure, start_teredo_server};

/// The root, from `TEREDO_PACKAGE_ROOT`.
fn package_root() -> TestResult<PathBuf> {
    let root = std::env::var_os("TEREDO_PACKAGE_ROOT")
        .ok_or("TEREDO_PACKAGE_ROOT is not set: run scripts/package-test")?;
    let root = PathBuf::from(root);
    ensure!(
        root.join("lib/systemd/system/teredo.service").exists(),
        "{}: the package is not installed there",
        root.display()
    );
    Ok(root)
}

/// Points the `ServerAddress` line of the root's `/etc/miredo.conf` at `server`, leaving
/// every other line as Debian wrote it.
fn point_at(root: &Path, server: std::net::Ipv4Addr) -> TestResult {
    let path = root.join("etc/miredo.conf");
    let text = std::fs::read_to_string(&path)?;
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case("ServerAddress")) {
                changed += 1;
                format!("ServerAddress {server}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    ensure!(changed == 1, "{}: {changed} ServerAddress lines:\n{text}", path.display());
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(())
}

/// The steps inside the container, as a shell script: each prints `STEP name: ok` or
/// `STEP name: FAIL why` to the results file, which ends with `DONE`.
const STEPS: &str = r#"#!/bin/sh
# teredo package test, run by teredo-package-test.service inside the container.
out=/var/lib/teredo-package-test/results
log=/var/lib/teredo-package-test/log
: >"$out"
exec >>"$log" 2>&1
ok() { echo "STEP $1: ok${2:+ ($2)}" >>"$out"; }
fail() { echo "STEP $1: FAIL $2" >>"$out"; }
check() { name=$1; shift; if "$@"; then ok "$name"; else fail "$name" "$*"; fi; }
status_field() { teredo status --json | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
wait_state() {
    i=0
    while [ $i -lt 200 ]; do
        [ "$(status_field state)" = "$1" ] && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}

v=$(systemd-analyze verify /lib/systemd/system/teredo.service /lib/systemd/system/teredo-server.service \
    /lib/systemd/system/teredo@.service 2>&1); rc=$?
echo "systemd-analyze verify: rc=$rc"; echo "$v"
if [ $rc = 0 ] && [ -z "$v" ]; then ok verify "rc 0, no output"; else fail verify "rc $rc: $v"; fi
check enabled-at-install [ "$(systemctl is-enabled teredo.service)" = enabled ]
check alias-miredo [ "$(systemctl show -p Id --value miredo.service)" = teredo.service ]
# teredo-server.service is not enabled at installation (Debian's miredo-server is not
# started by default); enabling it brings its alias.
check server-not-enabled [ "$(systemctl is-enabled teredo-server.service)" = disabled ]
systemctl enable teredo-server.service
check alias-miredo-server [ "$(systemctl show -p Id --value miredo-server.service)" = teredo-server.service ]
systemctl disable teredo-server.service

systemctl stop teredo.service
check stopped-no-interface sh -c '! ip link show teredo >/dev/null 2>&1'
systemctl start teredo.service; rc=$?
active=$(systemctl is-active teredo.service)
answer=$(teredo status --json 2>&1)
check start-active test "$rc" = 0 -a "$active" = active
echo "status right after start: $answer"
case "$answer" in *'"role":"client"'*) ok ready-when-active "$(systemctl show -p StatusText --value teredo.service)";;
    *) fail ready-when-active "teredo status right after systemctl start: $answer";; esac
check qualified wait_state qualified
ok address "$(status_field address)"
check config-is-miredos [ "$(status_field config)" = /etc/miredo/miredo.conf ]
check debian-hook-runs sh -c 'journalctl -b -u teredo.service --no-pager | grep -q "the hook /etc/miredo/client-hook configures the interface"'
check hook-route sh -c 'ip -6 route show default dev teredo | grep -q "metric 1029"'
pid=$(systemctl show -p MainPID --value teredo.service)
user=$(stat -c %U /proc/"$pid")
ok main-pid "$pid, user $user"
check runs-as-teredo [ "$(stat -c %u /proc/$pid)" = "$(id -u teredo)" ]
# Under the unit's own SystemCallFilter, every thread of the daemon and of its helper
# entered the daemon's sandbox (seccomp filter mode 2, no new privileges).
check sandboxed sh -c 'n=0; for p in /proc/[0-9]*; do [ "$(readlink $p/exe)" = /usr/sbin/teredo ] || continue; for t in $p/task/*; do grep -q "^Seccomp:[[:space:]]*2" $t/status && grep -q "^NoNewPrivs:[[:space:]]*1" $t/status || exit 1; n=$((n + 1)); done; done; [ $n -ge 2 ]'
systemctl reload teredo.service; rc=$?
check reload-rc [ $rc = 0 ]
check reload-logged sh -c 'journalctl -b -u teredo.service --no-pager | grep -q "SIGHUP: reloading /etc/miredo/miredo.conf"'
check reload-same-pid [ "$(systemctl show -p MainPID --value teredo.service)" = "$pid" ]
check reload-active [ "$(systemctl is-active teredo.service)" = active ]
check reload-qualified wait_state qualified
systemctl stop teredo.service; rc=$?
check stop-rc [ $rc = 0 ]
check stop-inactive [ "$(systemctl is-active teredo.service)" = inactive ]
check stop-removes-interface sh -c '! ip link show teredo >/dev/null 2>&1'
journalctl -b -u teredo.service --no-pager -o short-monotonic >/var/lib/teredo-package-test/journal 2>&1
echo DONE >>"$out"
systemctl poweroff --no-block
"#;

const UNIT: &str = "[Unit]
Description=teredo package test (steps of scripts/package-test)
After=multi-user.target teredo.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/teredo-package-test

[Install]
WantedBy=multi-user.target
";

/// Installs the steps and their unit in the root.
fn install_steps(root: &Path) -> TestResult<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join("var/lib/teredo-package-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let script = root.join("usr/local/sbin/teredo-package-test");
    std::fs::create_dir_all(script.parent().ok_or("no parent")?)?;
    std::fs::write(&script, STEPS)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(root.join("etc/systemd/system/teredo-package-test.service"), UNIT)?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants/teredo-package-test.service");
    let _ = std::fs::remove_file(&wants);
    std::os::unix::fs::symlink("/etc/systemd/system/teredo-package-test.service", wants)?;
    Ok(dir.join("results"))
}

/// Boots the root in `node`'s network namespace; returns the container's output and the
/// results file's text, or nspawn's error when it could not boot.
fn boot(node: &Node, root: &Path, results: &Path) -> TestResult<Result<String, String>> {
    let netns = format!("/run/netns/{}", node.ns());
    let root_s = root.to_string_lossy();
    let args = [
        "-D",
        &*root_s,
        "--register=no",
        "--keep-unit",
        "--boot",
        "--network-namespace-path",
        &netns,
        "--bind=/dev/net/tun",
        // nspawn keeps CAP_NET_ADMIN only for a network it made itself; this one is the
        // lab's, and the container is a machine of its own there.
        "--capability=CAP_NET_ADMIN",
        "--resolv-conf=off",
        "--timezone=off",
    ];
    let mut d = node.spawn_joining("nspawn", "systemd-nspawn", &args)?;
    let start = Instant::now();
    let limit = Duration::from_secs(180);
    loop {
        let text = std::fs::read_to_string(results).unwrap_or_default();
        if text.lines().any(|l| l == "DONE") {
            let _ = d.wait_exit(Duration::from_secs(60));
            return Ok(Ok(text));
        }
        if !d.is_running() {
            return Ok(Err(format!("systemd-nspawn exited before the steps ended:\n{}", d.log())));
        }
        if start.elapsed() > limit {
            let log = d.log();
            d.stop()?;
            return Ok(Err(format!("the steps did not end within {limit:?}:\n{log}")));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs the root that scripts/package-test prepares (TEREDO_PACKAGE_ROOT)"]
fn package_under_systemd_in_nspawn() {
    teredo_lab::run("package-nspawn", &["systemd-nspawn"], |lab: &mut Lab| -> TestResult {
        let root = package_root()?;
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::FullCone)?;
        let _srv = start_teredo_server(&server, &[])?;
        point_at(&root, server.primary)?;
        let results = install_steps(&root)?;
        let booted = if std::env::var("TEREDO_PACKAGE_NO_NSPAWN").as_deref() == Ok("1") {
            Err("TEREDO_PACKAGE_NO_NSPAWN=1: not booting".to_owned())
        } else {
            boot(&client, &root, &results)?
        };
        match booted {
            Ok(text) => {
                let dir = results.parent().ok_or("no parent")?;
                println!("container log:\n{}", std::fs::read_to_string(dir.join("log")).unwrap_or_default());
                println!(
                    "journal of teredo.service:\n{}",
                    std::fs::read_to_string(dir.join("journal")).unwrap_or_default()
                );
                println!("results:\n{text}");
                let failed: Vec<&str> = text.lines().filter(|l| l.contains(": FAIL")).collect();
                ensure!(failed.is_empty(), "steps failed:\n{}", failed.join("\n"));
                // Every `check` and `ok` line of the steps, and the two written out (verify and
                // ready-when-active).
                let steps =
                    STEPS.lines().filter(|l| l.starts_with("check ") || l.starts_with("ok ")).count() + 2;
                let passed = text.lines().filter(|l| l.starts_with("STEP ") && !l.contains(": FAIL")).count();
                ensure!(passed == steps, "{passed} of {steps} steps passed:\n{text}");
                ensure!(!client.has_link(IFACE), "the interface is still there after systemctl stop");
                Ok(())
            }
            Err(why) => {
                println!("systemd-nspawn could not run the steps: {why}");
                ensure!(std::env::var("TEREDO_PACKAGE_BY_HAND").as_deref() == Ok("1"), "{why}");
                by_hand(lab, &client, &server, &root)
            }
        }
    });
}

/// The unit's `KEY=` line of `unit` in the root, `$MAINPID` left as is.
fn unit_line(root: &Path, unit: &str, key: &str) -> TestResult<String> {
    let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')).map(str::to_owned))
        .ok_or_else(|| format!("{unit} has no {key}=").into())
}

/// The same steps without systemd: `ExecStart` of teredo.service run by hand, chrooted
/// into the root (its /dev and /proc mounted in a mount namespace of its own), then
/// `ExecReload` (SIGHUP) and a stop (SIGTERM).
fn by_hand(
    _lab: &mut Lab,
    client: &teredo_lab::Client,
    server: &teredo_lab::Server,
    root: &Path,
) -> TestResult {
    let exec = unit_line(root, "teredo.service", "ExecStart")?;
    let reload = unit_line(root, "teredo.service", "ExecReload")?;
    println!("by hand: ExecStart={exec}; ExecReload={reload}");
    let script = format!(
        "mount --rbind /dev \"$0/dev\" && mount -t proc proc \"$0/proc\" && exec chroot \"$0\" {exec}"
    );
    let root_s = root.to_string_lossy();
    let mut d = client.spawn(
        "by-hand",
        "unshare",
        &["--mount", "--propagation", "private", "sh", "-c", &script, &root_s],
    )?;
    let (addr, _) = check_qualified(client, server.primary)?;
    println!("by hand: qualified as {addr}");
    ensure!(reload.contains("-HUP"), "ExecReload sends no SIGHUP: {reload}");
    let pid = d.pid().ok_or("exited")?;
    d.signal(libc::SIGHUP)?;
    std::thread::sleep(Duration::from_secs(1));
    ensure!(d.is_running() && d.pid() == Some(pid), "not running after SIGHUP");
    let (again, _) = check_qualified(client, server.primary)?;
    println!("by hand: still qualified as {again} after SIGHUP");
    d.stop()?;
    teredo_lab::wait_for("the interface to go", WAIT, || !client.has_link(IFACE))?;
    Ok(())
}
