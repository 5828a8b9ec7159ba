//! End-to-end tests of the `teredo` command: `check-config` on good and bad client, relay
//! and server files (exact diagnostics and exit status), the shipped samples in `conf/`,
//! `teredo address`, and command-line syntax errors (exit status 2); the Miredo entry
//! points of the same binary ([`entry_points`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "cli/entry_points.rs"]
mod entry_points;

const TEREDO: &str = env!("CARGO_BIN_EXE_teredo");

/// One configuration file and what `teredo check-config` must say about it.
struct Case {
    /// Unique; the file is written as `NAME.conf`.
    name: &'static str,
    /// Check it with `--server`.
    server: bool,
    text: &'static str,
    /// Expected diagnostics as (line, message), line 0 for the whole file. None means a
    /// clean file: exit 0 and `FILE: OK`.
    problems: &'static [(usize, &'static str)],
}

const CASES: &[Case] = &[
    // Clean files of each kind.
    Case {
        name: "clean-client",
        server: false,
        text: "RelayType client\nServerAddress 192.0.2.1\nServerAddress2 192.0.2.2\n\
               InterfaceName teredo\nBindAddress 10.0.0.2\nBindPort 3545\nSyslogFacility user\n",
        problems: &[],
    },
    Case {
        name: "clean-relay",
        server: false,
        text: "RelayType cone\nPrefix 2001:0::\nInterfaceMTU 1400\nInterfaceName teredo\n\
               BindAddress 192.0.2.100\n",
        problems: &[],
    },
    Case {
        name: "clean-server",
        server: true,
        text: "ServerBindAddress 192.0.2.1\nServerBindAddress2 192.0.2.2\nPrefix 2001:0::\n\
               InterfaceMTU 1280\nSyslogFacility local0\n",
        problems: &[],
    },
    Case {
        name: "comments-and-blank-lines",
        server: false,
        text: "#! /usr/sbin/miredo -f -c\n\n   # indented comment\n\t \r\n\
               ServerAddress 192.0.2.1   words after the value are ignored\r\n",
        problems: &[],
    },
    Case {
        name: "case-insensitive",
        server: false,
        text: "relaytype CLIENT\nSERVERADDRESS 192.0.2.1\nbindport 3545\nSyslogFACILITY LOCAL7\n",
        problems: &[],
    },
    Case {
        name: "relay-aliases",
        server: false,
        text: "RelayType Relay\nPREFIX 3ffe:831f::\n",
        problems: &[],
    },
    Case {
        name: "hex-and-octal",
        server: false,
        text: "RelayType cone\nInterfaceMTU 0x5DC\nBindPort 06730\n",
        problems: &[],
    },
    Case {
        name: "hostname-without-dns",
        server: false,
        text: "ServerAddress teredo.example.invalid\nServerAddress2 teredo2.example.invalid.\n\
               BindAddress localhost\n",
        problems: &[],
    },
    Case {
        name: "server-hostname",
        server: true,
        text: "ServerBindAddress teredo.example.invalid\n",
        problems: &[],
    },
    // Miredo 1.2.6 skips a last line without a newline; teredo reads it.
    Case {
        name: "last-line-without-newline",
        server: false,
        text: "RelayType client\nServerAddress 192.0.2.1",
        problems: &[],
    },
    Case {
        name: "server-last-line-without-newline",
        server: true,
        text: "Prefix 2001:0::\nServerBindAddress 192.0.2.1",
        problems: &[],
    },
    Case {
        name: "bad-last-line-without-newline",
        server: false,
        text: "ServerAddress 192.0.2.1\nBindPort x",
        problems: &[(2, "invalid BindPort \"x\": not a decimal, 0x hexadecimal or 0-prefixed octal integer")],
    },
    // Warnings (which check-config treats as failures).
    Case {
        name: "unknown-directive",
        server: false,
        text: "ServerAddress 192.0.2.1\nMTU 1400\nIgnoreConeBit yes\n",
        problems: &[(2, "unknown directive \"MTU\""), (3, "unknown directive \"IgnoreConeBit\"")],
    },
    Case {
        name: "server-unknown-directive",
        server: true,
        text: "ServerBindAddress 192.0.2.1\nServerPort 3544\n",
        problems: &[(2, "unknown directive \"ServerPort\"")],
    },
    Case {
        name: "duplicate-directive",
        server: false,
        text: "ServerAddress 192.0.2.1\nBindPort 3545\nServerAddress 192.0.2.2\n",
        problems: &[(3, "duplicate directive \"ServerAddress\" ignored: the first one, at line 1, applies")],
    },
    // The second occurrence is not even parsed: its bad value is not reported.
    Case {
        name: "duplicate-first-wins",
        server: false,
        text: "ServerAddress 192.0.2.1\nserveraddress 10.0.0.1\n",
        problems: &[(2, "duplicate directive \"serveraddress\" ignored: the first one, at line 1, applies")],
    },
    Case {
        name: "duplicate-first-is-bad",
        server: true,
        text: "ServerBindAddress 10.0.0.1\nServerBindAddress 192.0.2.1\n",
        problems: &[
            (
                1,
                "invalid ServerBindAddress \"10.0.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)",
            ),
            (2, "duplicate directive \"ServerBindAddress\" ignored: the first one, at line 1, applies"),
        ],
    },
    Case {
        name: "server-directive-in-client-file",
        server: false,
        text: "ServerAddress 192.0.2.1\nServerBindAddress 192.0.2.1\n",
        problems: &[(
            2,
            "directive \"ServerBindAddress\" ignored: it is a server directive (miredo-server.conf)",
        )],
    },
    Case {
        name: "client-directive-in-server-file",
        server: true,
        text: "ServerBindAddress 192.0.2.1\nServerAddress 192.0.2.1\nBindPort 3545\n",
        problems: &[
            (2, "directive \"ServerAddress\" ignored: it is a client and relay directive (miredo.conf)"),
            (3, "directive \"BindPort\" ignored: it is a client and relay directive (miredo.conf)"),
        ],
    },
    Case {
        name: "relay-directives-in-client-mode",
        server: false,
        text: "ServerAddress 192.0.2.1\nPrefix 2001::\nInterfaceMTU 1400\n",
        problems: &[
            (
                2,
                "directive \"Prefix\" ignored: it applies to relays only (RelayType cone, relay or restricted)",
            ),
            (
                3,
                "directive \"InterfaceMTU\" ignored: it applies to relays only (RelayType cone, relay or restricted)",
            ),
        ],
    },
    Case {
        name: "client-directives-in-relay-mode",
        server: false,
        // A relay's ServerAddress names the servers it probes for its health.
        text: "RelayType relay\nServerAddress 192.0.2.1\nServerAddress2 192.0.2.2\n",
        problems: &[(
            3,
            "directive \"ServerAddress2\" ignored: it applies to clients only (RelayType client)",
        )],
    },
    Case {
        name: "name-without-value",
        server: false,
        text: "ServerAddress 192.0.2.1\nInterfaceName   \n",
        problems: &[(2, "ignoring line: directive \"InterfaceName\" has no value")],
    },
    Case {
        name: "restricted-is-deprecated",
        server: false,
        text: "RelayType restricted\n",
        problems: &[(1, "RelayType restricted is deprecated and STRONGLY DISCOURAGED: use RelayType cone")],
    },
    // Errors.
    Case {
        name: "bad-integer",
        server: false,
        text: "ServerAddress 192.0.2.1\nBindPort 3545x\n",
        problems: &[(
            2,
            "invalid BindPort \"3545x\": not a decimal, 0x hexadecimal or 0-prefixed octal integer",
        )],
    },
    Case {
        name: "bad-octal",
        server: false,
        text: "RelayType cone\nBindPort 08\n",
        problems: &[(
            2,
            "invalid BindPort \"08\": not a decimal, 0x hexadecimal or 0-prefixed octal integer",
        )],
    },
    Case {
        name: "integer-too-large",
        server: false,
        text: "RelayType cone\nInterfaceMTU 0x10000\nBindPort 65536\n",
        problems: &[
            (2, "invalid InterfaceMTU \"0x10000\": above 65535"),
            (3, "invalid BindPort \"65536\": above 65535"),
        ],
    },
    Case {
        name: "mtu-too-small",
        server: false,
        text: "RelayType cone\nInterfaceMTU 1279\n",
        problems: &[(2, "invalid InterfaceMTU \"1279\": below the IPv6 minimum MTU of 1280 (RFC 8200 §5)")],
    },
    Case {
        name: "server-mtu-too-small",
        server: true,
        text: "ServerBindAddress 192.0.2.1\nInterfaceMTU 0576\n",
        problems: &[(2, "invalid InterfaceMTU \"0576\": below the IPv6 minimum MTU of 1280 (RFC 8200 §5)")],
    },
    Case {
        name: "non-global-server-address",
        server: false,
        text: "ServerAddress 10.0.0.1\nServerAddress2 100.64.0.1\n",
        problems: &[
            (1, "invalid ServerAddress \"10.0.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)"),
            (2, "invalid ServerAddress2 \"100.64.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)"),
        ],
    },
    Case {
        name: "non-global-server-bind-address",
        server: true,
        text: "ServerBindAddress 192.168.1.1\nServerBindAddress2 100.64.0.1\n",
        problems: &[
            (
                1,
                "invalid ServerBindAddress \"192.168.1.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)",
            ),
            (
                2,
                "invalid ServerBindAddress2 \"100.64.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)",
            ),
        ],
    },
    Case {
        name: "secondary-not-global",
        server: true,
        text: "ServerBindAddress 223.255.255.255\n",
        problems: &[(
            1,
            "the secondary address after 223.255.255.255 is not a global unicast IPv4 address (RFC 4380 §5.2.4): set ServerBindAddress2",
        )],
    },
    Case {
        name: "bad-host",
        server: false,
        text: "ServerAddress 192.0.2.256\nBindAddress bad_name\n",
        problems: &[
            (
                1,
                "invalid ServerAddress \"192.0.2.256\": neither a dotted IPv4 address nor a valid host name (RFC 1123 §2.1)",
            ),
            (
                2,
                "invalid BindAddress \"bad_name\": neither a dotted IPv4 address nor a valid host name (RFC 1123 §2.1)",
            ),
        ],
    },
    Case {
        name: "missing-server-address",
        server: false,
        text: "RelayType client\nInterfaceName teredo\n",
        problems: &[(
            0,
            "ServerAddress is required for a client (RelayType client), unless a server is named on the command line",
        )],
    },
    Case {
        name: "server-address-without-value",
        server: false,
        text: "ServerAddress\n",
        problems: &[
            (1, "ignoring line: directive \"ServerAddress\" has no value"),
            (
                0,
                "ServerAddress is required for a client (RelayType client), unless a server is named on the command line",
            ),
        ],
    },
    Case {
        name: "missing-server-bind-address",
        server: true,
        text: "Prefix 2001:0::\n",
        problems: &[(0, "ServerBindAddress is required, unless an address is named on the command line")],
    },
    Case {
        name: "empty-client-file",
        server: false,
        text: "",
        problems: &[(
            0,
            "ServerAddress is required for a client (RelayType client), unless a server is named on the command line",
        )],
    },
    Case {
        name: "invalid-relay-type",
        server: false,
        text: "RelayType server\nServerAddress 192.0.2.1\n",
        problems: &[(
            1,
            "invalid RelayType \"server\": expected client, autoclient, relay, cone or restricted",
        )],
    },
    Case {
        name: "multicast-prefix",
        server: false,
        text: "RelayType cone\nPrefix ff02::1\n",
        problems: &[(2, "invalid Prefix \"ff02::1\": in the multicast range ff00::/8")],
    },
    Case {
        name: "server-multicast-prefix",
        server: true,
        text: "ServerBindAddress 192.0.2.1\nPrefix ff00::\n",
        problems: &[(2, "invalid Prefix \"ff00::\": in the multicast range ff00::/8")],
    },
    Case {
        name: "prefix-not-ipv6",
        server: false,
        text: "RelayType cone\nPrefix 2001::/32\n",
        problems: &[(2, "invalid Prefix \"2001::/32\": not an IPv6 address")],
    },
    Case {
        name: "bad-syslog-facility",
        server: true,
        text: "ServerBindAddress 192.0.2.1\nSyslogFacility local8\n",
        problems: &[(
            2,
            "invalid SyslogFacility \"local8\": expected auth, authpriv, cron, daemon, ftp, kern, local0 to local7, lpr, mail, news, syslog, user or uucp",
        )],
    },
    Case {
        name: "bad-interface-name",
        server: false,
        text: "ServerAddress 192.0.2.1\nInterfaceName teredo-interface0\n",
        problems: &[(
            2,
            "invalid InterfaceName \"teredo-interface0\": an interface name has 1 to 15 printable ASCII characters, is not \".\" nor \"..\" and has no '/' or ':'",
        )],
    },
    // teredo's own directives.
    Case {
        name: "client-hook-and-max-peers",
        server: false,
        text: "ServerAddress 192.0.2.1\nClientHook /etc/miredo/client-hook\nMaxPeers 0x100000\n",
        problems: &[],
    },
    Case {
        name: "client-hook-relative",
        server: false,
        text: "ServerAddress 192.0.2.1\nClientHook client-hook\n",
        problems: &[(2, "invalid ClientHook \"client-hook\": not an absolute path")],
    },
    Case {
        name: "client-hook-in-relay-mode",
        server: false,
        text: "RelayType cone\nClientHook /etc/miredo/client-hook\nMaxPeers 1000\n",
        problems: &[(2, "directive \"ClientHook\" ignored: it applies to clients only (RelayType client)")],
    },
    Case {
        name: "max-peers-zero",
        server: false,
        text: "ServerAddress 192.0.2.1\nMaxPeers 0\n",
        problems: &[(2, "invalid MaxPeers \"0\": a number of peers from 1 to 16777216")],
    },
    Case {
        name: "max-peers-in-server-file",
        server: true,
        text: "ServerBindAddress 192.0.2.1\nMaxPeers 1000\n",
        problems: &[(2, "directive \"MaxPeers\" ignored: it is a client and relay directive (miredo.conf)")],
    },
];

/// A directory of this test binary's own for the files it writes.
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("teredo-cli-tests");
    fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

fn teredo(dir: &Path, args: &[&str]) -> Output {
    Command::new(TEREDO).args(args).current_dir(dir).output().expect("run teredo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Runs `teredo check-config [--server] FILE` in the directory of `file`.
fn check(dir: &Path, file: &str, server: bool) -> (Option<i32>, String, String) {
    let mut args = vec!["check-config"];
    if server {
        args.push("--server");
    }
    args.push(file);
    let o = teredo(dir, &args);
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

#[test]
fn check_config_table() {
    let dir = scratch();
    let mut failures = Vec::new();
    for case in CASES {
        let file = format!("{}.conf", case.name);
        fs::write(dir.join(&file), case.text).expect("write the case");
        let got = check(&dir, &file, case.server);
        let expected = if case.problems.is_empty() {
            (Some(0), format!("{file}: OK\n"), String::new())
        } else {
            let stderr: String = case
                .problems
                .iter()
                .map(|&(line, message)| match line {
                    0 => format!("{file}: {message}\n"),
                    n => format!("{file}:{n}: {message}\n"),
                })
                .collect();
            (Some(1), String::new(), stderr)
        };
        if got != expected {
            failures.push(format!("case {}:\n  expected {expected:?}\n  got      {got:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn overly_long_line_is_skipped() {
    let dir = scratch();
    let long = format!("ServerAddress2 {}", "a".repeat(1100));
    fs::write(dir.join("long-line.conf"), format!("ServerAddress 192.0.2.1\n{long}\n")).expect("write");
    let got = check(&dir, "long-line.conf", false);
    assert_eq!(
        got,
        (
            Some(1),
            String::new(),
            "long-line.conf:2: skipped overly long line (1115 bytes, at most 1055)\n".into()
        )
    );
}

#[test]
fn non_utf8_bytes_are_reported_not_fatal() {
    let dir = scratch();
    fs::write(dir.join("latin1.conf"), b"# caf\xe9\nServerAddress 192.0.2.1\nInterfaceName t\xe9redo\n")
        .expect("write");
    let (status, out, err) = check(&dir, "latin1.conf", false);
    assert_eq!((status, out.as_str()), (Some(1), ""));
    assert!(err.starts_with("latin1.conf:3: invalid InterfaceName \"t\u{fffd}redo\""), "{err}");
}

#[test]
fn unreadable_files() {
    let dir = scratch();
    assert_eq!(
        check(&dir, "does-not-exist.conf", false),
        (
            Some(1),
            String::new(),
            "does-not-exist.conf: cannot read: No such file or directory (os error 2)\n".into()
        )
    );
    assert_eq!(
        check(&dir, "does-not-exist.conf", true),
        (
            Some(1),
            String::new(),
            "does-not-exist.conf: cannot read: No such file or directory (os error 2)\n".into()
        )
    );
    fs::create_dir_all(dir.join("a-directory.conf")).expect("mkdir");
    assert_eq!(
        check(&dir, "a-directory.conf", false),
        (Some(1), String::new(), "a-directory.conf: cannot read: Is a directory (os error 21)\n".into())
    );
}

#[test]
fn default_file_is_named() {
    // The machine may or may not have Miredo's files: either way the output names them.
    let dir = scratch();
    for (server, path) in [(false, "/etc/miredo/miredo.conf"), (true, "/etc/miredo/miredo-server.conf")] {
        let mut args = vec!["check-config"];
        if server {
            args.push("--server");
        }
        let o = teredo(&dir, &args);
        let all = text(&o.stdout) + &text(&o.stderr);
        assert!(all.starts_with(path), "{all}");
        assert!(matches!(o.status.code(), Some(0 | 1)));
    }
}

#[test]
fn shipped_samples_pass() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf");
    for (file, server) in [("client.conf", false), ("relay.conf", false), ("server.conf", true)] {
        assert_eq!(check(&conf, file, server), (Some(0), format!("{file}: OK\n"), String::new()), "{file}");
    }
    // The client and relay samples are not server files, and the other way round.
    assert_eq!(check(&conf, "server.conf", false).0, Some(1));
    assert_eq!(check(&conf, "client.conf", true).0, Some(1));
}

#[test]
fn address_worked_example_json() {
    // RFC 4380 §4's example: server 65.54.227.120, cone, port 40000, client 192.0.2.45.
    let o = teredo(&scratch(), &["address", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stderr.is_empty());
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(v.is_object());
    assert_eq!(v["prefix"], "2001::/32");
    assert_eq!(v["server"], "65.54.227.120");
    assert_eq!(v["flags"], 32768);
    assert_eq!(v["cone"], true);
    assert_eq!(v["mapped_port"], 40000);
    assert_eq!(v["mapped_address"], "192.0.2.45");
}

#[test]
fn address_text() {
    let o = teredo(&scratch(), &["address", "2001:0:c000:201:8000:cfc6:3fff:fd74"]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    for expected in [
        "prefix:          2001::/32",
        "server:          192.0.2.1",
        "flags:           0x8000",
        "C (cone):      1",
        "mapped port:     12345",
        "mapped address:  192.0.2.139",
    ] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
    let legacy = teredo(&scratch(), &["address", "3ffe:831f:4136:e378:8000:63bf:3fff:fdd2", "--json"]);
    assert_eq!(legacy.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&legacy.stdout).expect("JSON");
    assert_eq!(v["prefix"], "3ffe:831f::/32");
}

#[test]
fn address_refusals() {
    let dir = scratch();
    for (args, stderr) in [
        (
            &["address", "2001:db8::1"][..],
            "teredo: 2001:db8::1 is not a Teredo address: its prefix is neither 2001::/32 nor 3ffe:831f::/32\n",
        ),
        (
            &["address", "2002:c000:201::1", "--json"][..],
            "teredo: 2002:c000:201::1 is not a Teredo address: its prefix is neither 2001::/32 nor 3ffe:831f::/32\n",
        ),
        (&["address", "garbage"][..], "teredo: \"garbage\" is not an IPv6 address\n"),
        (&["address", "192.0.2.1", "--json"][..], "teredo: \"192.0.2.1\" is not an IPv6 address\n"),
    ] {
        let o = teredo(&dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert_eq!(text(&o.stderr), stderr);
    }
}

#[test]
fn bad_command_line_syntax_exits_2() {
    let dir = scratch();
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["address"][..],
        &["address", "2001::1", "2001::2"][..],
        &["address", "--bogus", "2001::1"][..],
        &["check-config", "a.conf", "b.conf"][..],
        &["check-config", "--bogus"][..],
        // The daemons' cases also name a file that does not exist, so that none could ever
        // start a daemon here, outside a lab namespace, if its syntax were accepted.
        &["run", "-c", "/nonexistent/teredo.conf", "192.0.2.1", "192.0.2.2"][..],
        &["run", "-c", "/nonexistent/teredo.conf", "--bogus"][..],
        &["server", "-c", "/nonexistent/teredo.conf", "192.0.2.1", "192.0.2.2"][..],
        &["server", "-c", "/nonexistent/teredo.conf", "--bogus"][..],
        &["server", "-c", "a.conf", "-c", "/nonexistent/teredo.conf"][..],
        &["server", "-c", "/nonexistent/teredo.conf", "-f", "-f"][..],
    ] {
        let o = teredo(&dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn version_and_help() {
    let dir = scratch();
    for flag in ["--version", "-V"] {
        let o = teredo(&dir, &[flag]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(text(&o.stdout), format!("teredo {}\n", env!("CARGO_PKG_VERSION")));
    }
    let o = teredo(&dir, &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = text(&o.stdout);
    assert!(help.contains("check-config") && help.contains("address"), "{help}");
    for sub in ["check-config", "address"] {
        let o = teredo(&dir, &[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        assert!(text(&o.stdout).contains(&format!("Usage: teredo {sub}")));
    }
}

/// Replays the committed fuzz corpora of the configuration reader (`fuzz/corpus/config_*`)
/// through the same entry points as the fuzz targets, on the stable toolchain.
#[test]
fn config_fuzz_corpora_replay() {
    for (target, f) in [
        ("config_client_relay", teredo::config::fuzz::client_relay as fn(&[u8])),
        ("config_server", teredo::config::fuzz::server),
    ] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
        let mut n = 0;
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            f(&fs::read(e.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "{} is empty", dir.display());
    }
}
