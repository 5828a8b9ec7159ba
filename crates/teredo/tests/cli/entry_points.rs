//! The `teredo` binary started as `miredo`, `miredo-server` and `miredo-checkconf` (through
//! symbolic links, as the Debian package installs them): each takes Miredo's command line
//! and names itself as Miredo does; and `miredo-checkconf` agrees with Debian's real one
//! on good and broken files (that comparison needs root, to run Debian's checker in a
//! network namespace of its own, where it cannot resolve names on the machine's network;
//! without root or Miredo it prints SKIP, except under `CI=true` where it fails).
//!
//! No daemon is ever started here: every daemon command line names a file that does not
//! exist (the default `/etc/miredo/miredo.conf` of this machine may be Debian's, which
//! points at a public server).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{TEREDO, scratch, text};

/// A directory with `miredo`, `miredo-server` and `miredo-checkconf` linked to our binary.
///
/// Tests run side by side (threads, or processes under nextest) and each calls this: a
/// link is made under a name of this process and thread, then renamed over the shared
/// one, so that a link another test is running never goes missing for a moment.
fn entry_points() -> PathBuf {
    let dir = scratch().join("entry-points");
    fs::create_dir_all(&dir).unwrap();
    let me = format!("{}-{:?}", std::process::id(), std::thread::current().id());
    for name in ["miredo", "miredo-server", "miredo-checkconf"] {
        let fresh = dir.join(format!(".{name}.{me}"));
        let _ = fs::remove_file(&fresh);
        symlink(TEREDO, &fresh).unwrap();
        fs::rename(&fresh, dir.join(name)).unwrap();
    }
    dir
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program).args(args).current_dir(scratch()).output().expect("run the entry point")
}

#[test]
fn help_and_version_name_miredo_programs() {
    let dir = entry_points();
    let version = format!("(teredo {})", env!("CARGO_PKG_VERSION"));
    for (name, usage) in [
        ("miredo", "Usage: miredo [OPTIONS] [SERVER_NAME]"),
        ("miredo-server", "Usage: miredo-server [OPTIONS] [SERVER_ADDRESS]"),
        ("miredo-checkconf", "Usage: miredo-checkconf [OPTIONS] [CONF_FILE]..."),
    ] {
        let o = run(&dir.join(name), &["-h"]);
        assert_eq!(o.status.code(), Some(0), "{name} -h");
        let help = text(&o.stdout);
        assert!(help.contains(usage), "{name} -h:\n{help}");
        for flag in ["-c, --config <FILE>", "-f, --foreground", "-p, --pidfile <FILE>", "-u, --user <USER>"] {
            assert!(help.contains(flag), "{name} -h lacks {flag}:\n{help}");
        }
        let o = run(&dir.join(name), &["-V"]);
        assert_eq!(o.status.code(), Some(0), "{name} -V");
        assert_eq!(text(&o.stdout), format!("{name} {version}\n"));
    }
    // The daemons' default user is Miredo's (Debian builds it with --enable-miredo-user):
    // `miredo` where it exists; the help says so on every machine.
    for name in ["miredo", "miredo-server"] {
        // Whatever the width clap wraps the help to.
        let help =
            text(&run(&dir.join(name), &["-h"]).stdout).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains("miredo where it exists, else teredo, else nobody [default: miredo]"),
            "{help}"
        );
    }
    let user = teredo::cli::miredo::miredo_user();
    if fs::read_to_string("/etc/passwd").unwrap_or_default().contains("\nmiredo:") {
        assert_eq!(user, "miredo");
    }
}

#[test]
fn daemon_messages_and_syntax_are_miredos() {
    let dir = entry_points();
    // A file that does not exist: exit status 1, the message under Miredo's name.
    for name in ["miredo", "miredo-server"] {
        let o = run(&dir.join(name), &["-f", "-c", "/nonexistent/miredo.conf"]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = text(&o.stderr);
        assert!(
            err.starts_with(&format!("{name}: ")) && err.contains("/nonexistent/miredo.conf"),
            "{name}: {err}"
        );
    }
    // Miredo's "Duplicate parameter", a second positional argument and an unknown option
    // are syntax errors: exit status 2.
    for (name, args) in [
        ("miredo", &["-c", "/nonexistent/a.conf", "-f", "-f"][..]),
        ("miredo", &["-c", "/nonexistent/a.conf", "-c", "/nonexistent/b.conf"][..]),
        ("miredo", &["-c", "/nonexistent/a.conf", "192.0.2.1", "192.0.2.2"][..]),
        ("miredo-server", &["-c", "/nonexistent/a.conf", "-u", "a", "-u", "b"][..]),
        ("miredo-server", &["-c", "/nonexistent/a.conf", "--bogus"][..]),
        ("miredo-checkconf", &["--bogus"][..]),
    ] {
        let o = run(&dir.join(name), args);
        assert_eq!(o.status.code(), Some(2), "{name} {args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(&format!("Usage: {name}")), "{name} {args:?}");
    }
}

#[test]
fn checkconf_takes_miredos_command_line() {
    let dir = entry_points();
    let work = scratch().join("checkconf-cli");
    fs::create_dir_all(&work).unwrap();
    let good = work.join("good.conf");
    let bad = work.join("bad.conf");
    fs::write(&good, "ServerAddress 192.0.2.1\n").unwrap();
    fs::write(&bad, "ServerAddress 192.0.2.1\nFoo bar\n").unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    let checkconf = dir.join("miredo-checkconf");
    for (args, ok) in [
        // Debian's unit: `miredo-checkconf -f /etc/miredo/miredo.conf`.
        (vec!["-f", good], true),
        (vec!["-f", bad], false),
        (vec![good], true),
        (vec!["-c", good], true),
        // The positional file wins over -c; later positional arguments are ignored; -p, -t
        // and -u take their argument and are ignored; an option may come twice.
        (vec!["-c", good, bad], false),
        (vec!["-c", bad, good], true),
        (vec![good, bad], true),
        (vec!["-u", "nobody", "-p", "/x.pid", "-t", "/", "-f", "-f", good], true),
        (vec!["/nonexistent/miredo.conf"], false),
    ] {
        let o = run(&checkconf, &args);
        assert_eq!(
            o.status.code(),
            Some(if ok { 0 } else { 1 }),
            "miredo-checkconf {args:?}: {}",
            text(&o.stderr)
        );
    }
    let o = run(&checkconf, &["-f", bad]);
    assert_eq!(text(&o.stderr), format!("{bad}:2: unknown directive \"Foo\"\n"));
}

/// One file for the comparison with Debian's `miredo-checkconf`.
struct Agreement {
    name: &'static str,
    text: &'static str,
    /// Miredo's verdict (true: exit status 0).
    miredo_ok: bool,
    /// Ours, where it differs on purpose (see `teredo::cli::miredo`), with the reason.
    differs: Option<(bool, &'static str)>,
}

const fn same(name: &'static str, text: &'static str, ok: bool) -> Agreement {
    Agreement { name, text, miredo_ok: ok, differs: None }
}

const AGREEMENT: &[Agreement] = &[
    same("good-minimal", "ServerAddress 192.0.2.1\n", true),
    same(
        "good-full-client",
        "RelayType client\nServerAddress 192.0.2.1\nServerAddress2 192.0.2.2\nInterfaceName teredo\n\
         BindAddress 192.0.2.100\nBindPort 3545\nSyslogFacility user\n",
        true,
    ),
    same(
        "good-relay",
        "RelayType cone\nPrefix 2001:0::\nInterfaceMTU 1400\nInterfaceName teredo\nBindPort 0x0dd9\n",
        true,
    ),
    same("good-relay-alias", "RelayType relay\n", true),
    same("good-autoclient", "RelayType autoclient\nServerAddress 192.0.2.1\n", true),
    same(
        "good-comments-case",
        "#! /usr/sbin/miredo -f -c\n\n  # x\nrelaytype CLIENT\nSERVERADDRESS 192.0.2.1 trailing words\n",
        true,
    ),
    same("unknown-directive", "ServerAddress 192.0.2.1\nFoo bar\n", false),
    same("repeated-directive", "ServerAddress 192.0.2.1\nServerAddress 192.0.2.2\n", false),
    same("client-directive-in-relay", "RelayType cone\nServerAddress2 192.0.2.1\n", false),
    same("server-directive", "ServerAddress 192.0.2.1\nServerBindAddress 192.0.2.1\n", false),
    same("no-server", "RelayType client\n", false),
    same("empty-file", "", false),
    same("bad-relay-type", "RelayType bogus\nServerAddress 192.0.2.1\n", false),
    same("port-too-big", "ServerAddress 192.0.2.1\nBindPort 70000\n", false),
    same("port-not-a-number", "ServerAddress 192.0.2.1\nBindPort 12abc\n", false),
    same("mtu-too-big", "RelayType cone\nInterfaceMTU 70000\n", false),
    same("name-without-value", "ServerAddress 192.0.2.1\nInterfaceName\n", false),
    same("bad-prefix", "RelayType cone\nPrefix notaprefix\n", false),
    same("bad-facility", "ServerAddress 192.0.2.1\nSyslogFacility bogus\n", false),
    same("bad-server-address", "ServerAddress 192.0.2.300\n", false),
    same("bad-bind-address", "ServerAddress 192.0.2.1\nBindAddress 192.0.2.300\n", false),
    // Where we differ on purpose.
    Agreement {
        name: "server-host-name",
        text: "ServerAddress teredo.example\n",
        miredo_ok: false,
        differs: Some((
            true,
            "Miredo's resolves the name at check time; ours reads it and the daemon resolves it",
        )),
    },
    Agreement {
        name: "relay-probe-servers",
        text: "RelayType cone\nServerAddress 192.0.2.1\n",
        miredo_ok: false,
        differs: Some((true, "a relay's ServerAddress names the servers it probes for its health")),
    },
    Agreement {
        name: "no-final-newline",
        text: "ServerAddress 192.0.2.1\nInterfaceName teredo",
        miredo_ok: false,
        differs: Some((true, "Miredo skips a last line without a newline as overly long; ours reads it")),
    },
    Agreement {
        name: "private-server",
        text: "ServerAddress 10.0.0.1\n",
        miredo_ok: true,
        differs: Some((false, "not global unicast: Miredo's daemon refuses it, its checkconf does not")),
    },
    Agreement {
        name: "multicast-server",
        text: "ServerAddress 224.0.0.1\n",
        miredo_ok: true,
        differs: Some((false, "not global unicast: Miredo's daemon refuses it, its checkconf does not")),
    },
    Agreement {
        name: "mtu-too-small",
        text: "RelayType cone\nInterfaceMTU 1000\n",
        miredo_ok: true,
        differs: Some((false, "below 1280: Miredo's daemon fails to set it, its checkconf does not check")),
    },
    Agreement {
        name: "multicast-prefix",
        text: "RelayType cone\nPrefix ff02::\n",
        miredo_ok: true,
        differs: Some((false, "in ff00::/8: Miredo's daemon refuses it, its checkconf does not check")),
    },
    Agreement {
        name: "interface-name-too-long",
        text: "ServerAddress 192.0.2.1\nInterfaceName abcdefghijklmnopqrstu\n",
        miredo_ok: true,
        differs: Some((false, "over 15 bytes: the kernel refuses it, Miredo's checkconf does not check")),
    },
    Agreement {
        name: "restricted",
        text: "RelayType restricted\n",
        miredo_ok: true,
        differs: Some((false, "deprecated: Miredo's daemon warns at start-up, ours fails the check on it")),
    },
];

/// Debian's `miredo-checkconf`, or why the comparison cannot run here.
fn debian_checkconf() -> Result<&'static Path, String> {
    let path = Path::new("/usr/sbin/miredo-checkconf");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (unshare -n)".into());
    }
    let version = Command::new(path).arg("-V").output().map_err(|e| format!("{}: {e}", path.display()))?;
    let version = text(&version.stdout);
    if !version.starts_with("Miredo: Teredo IPv6 tunneling software 1.2.6") {
        return Err(format!(
            "{} is not Debian's Miredo 1.2.6 (run .ci/install-deps): {version:?}",
            path.display()
        ));
    }
    Ok(path)
}

#[test]
fn checkconf_agrees_with_debians() {
    let miredo = match debian_checkconf() {
        Ok(p) => p,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("miredo-checkconf comparison: {why}")
        }
        Err(why) => {
            eprintln!("SKIP checkconf_agrees_with_debians: {why}");
            return;
        }
    };
    let ours = entry_points().join("miredo-checkconf");
    let work = scratch().join("checkconf-agreement");
    fs::create_dir_all(&work).unwrap();
    let mut report = Vec::new();
    for case in AGREEMENT {
        let file = work.join(format!("{}.conf", case.name));
        fs::write(&file, case.text).unwrap();
        let file = file.to_str().unwrap();
        // In a network namespace of its own (only a down loopback): a name it tries to
        // resolve cannot reach any resolver.
        let m = Command::new("unshare").args(["-n"]).arg(miredo).args(["-f", file]).output().unwrap();
        let o = run(&ours, &["-f", file]);
        let (miredo_ok, ours_ok) = (m.status.success(), o.status.success());
        assert_eq!(
            miredo_ok,
            case.miredo_ok,
            "{}: Debian's miredo-checkconf: {}{}",
            case.name,
            m.status,
            text(&m.stderr)
        );
        let want = case.differs.map_or(miredo_ok, |(ok, _)| ok);
        assert_eq!(ours_ok, want, "{}: ours: {}{}", case.name, o.status, text(&o.stderr));
        // A failure says where: the file, and the line when one line is wrong.
        if !ours_ok {
            assert!(text(&o.stderr).contains(file), "{}: {}", case.name, text(&o.stderr));
        }
        report.push(format!(
            "{:26} miredo {:4} ours {:4}{}",
            case.name,
            if miredo_ok { "ok" } else { "FAIL" },
            if ours_ok { "ok" } else { "FAIL" },
            case.differs.map_or(String::new(), |(_, why)| format!("  (differs: {why})"))
        ));
    }
    eprintln!("miredo-checkconf, Debian's against ours:\n{}", report.join("\n"));
}
