//! The network-namespace lab for teredo's integration tests.
//!
//! A [`Lab`] builds, on demand, a small Teredo world out of Linux network namespaces and
//! veth pairs: an "internet" router with documentation-range addresses, a Teredo server
//! with two consecutive public IPv4 addresses and native IPv6, a relay, a native IPv6
//! host, NATs of every kind of RFC 6081 Figure 1 ([`NatKind`], [`nat`]) and clients behind
//! them (two or more behind one NAT with [`Lab::client_beside`]). It is
//! never connected to the machine's uplink. Tests run daemons inside the namespaces
//! ([`Node::spawn`], [`miredo`]), wait with bounded timeouts ([`wait_until`]), ping, read
//! addresses and conntrack tables. Everything the lab made is removed when it is dropped,
//! also on panic; captures and logs are kept under `<target>/lab-artifacts/<test>/` and
//! summarised on stderr only when the test fails.
//!
//! ```no_run
//! use std::time::Duration;
//! use teredo_lab::{Lab, NatKind, miredo};
//!
//! teredo_lab::run("example", &["miredo", "miredo-server"], |lab: &mut Lab| {
//!     let server = lab.server()?;
//!     let client = lab.client_behind(NatKind::PortRestricted)?;
//!     let _srv = miredo::start_server(&server)?;
//!     let _cli = miredo::start_client(&client, &server, "teredo")?;
//!     let (addr, teredo) = client.wait_teredo_address("teredo", Duration::from_secs(20))?;
//!     assert_eq!(teredo.mapped_addr, client.public_ipv4(), "{addr}");
//!     Ok::<(), teredo_lab::LabError>(())
//! });
//! ```
//!
//! Needs root, `ip`, `nft`, `conntrack`, `tcpdump`, `ping` and `sysctl`, and `miniupnpd` for
//! the UPnP NATs (`.ci/install-deps` installs them, with Miredo, tshark and `upnpc`). When the lab cannot run, [`run`] skips with a
//! `SKIP` line on stderr, except under `CI=true` where it fails.
//!
//! Running: `cargo test -p teredo-lab --test lab` as root. Environment:
//! - `TEREDO_LAB_ARTIFACTS=DIR`: put artifacts under `DIR/<test>/` instead of
//!   `<target>/lab-artifacts/<test>/`;
//! - `TEREDO_LAB_KEEP=1`: keep (and summarise) artifacts of passing tests too;
//! - `TEREDO_LAB_CAPTURE=0`: no automatic captures;
//! - `CI=true`: missing requirements fail instead of skipping.
//!
//! Namespaces are named `tl-<pid>-<n>-<role>`, so labs of parallel tests and of parallel
//! test processes never collide; [`Lab::new`] also removes namespaces whose creating
//! process is gone (a test binary killed by SIGKILL).

#![warn(missing_docs)]

pub mod anycast;
pub mod bench;
pub mod bird;
mod cmd;
pub mod cpu_stat;
pub mod daemon;
pub mod error;
pub mod lab;
pub mod miredo;
pub mod nat;
pub mod netns;
pub mod node;
pub mod ping_log;
pub mod proc_stat;
pub mod wait;

use std::fmt::Display;

pub use daemon::Daemon;
pub use error::{LabError, Result};
pub use lab::{Client, Lab, Nat, Relay, Server, V6Host};
pub use nat::{ConntrackUdp, NatKind};
pub use node::{Node, ping6};
pub use wait::{wait_for, wait_until};

/// What a lab test returns: any error, with its message.
pub type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The bound on every wait for qualification or for a first ping in the lab tests (Miredo
/// qualifies in about 0.12 s here).
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Returns `Err(message)` from the test (a [`TestResult`] function) when `cond` is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+).into());
        }
    };
}

/// Whether the environment says this is a CI run (`CI=true` or `CI=1`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Checks that the lab can run here and that the extra programs `needs` are installed
/// (Miredo's are checked in depth when named).
pub fn check_requirements(needs: &[&str]) -> Result<()> {
    netns::check_available()?;
    if needs.iter().any(|n| *n == miredo::MIREDO || *n == miredo::MIREDO_SERVER) {
        miredo::check_available()?;
    }
    let missing: Vec<&str> = needs.iter().copied().filter(|p| !cmd::have_program(p)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Unavailable(format!("missing programs: {}", missing.join(", "))))
    }
}

/// Prints `SKIP lab test NAME: REASON` straight to the process's stderr, so that the test
/// harness's output capture does not hide it.
pub fn skip_message(name: &str, reason: &dyn Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP lab test {name}: {reason}");
}

/// Runs one lab test: checks the requirements (skipping with a `SKIP` message when they
/// are missing, or panicking under `CI=true`), makes a [`Lab`] named `name`, runs `test`
/// in it, and panics with the error if `test` fails, after the lab has printed where its
/// artifacts are.
pub fn run<E: Display>(name: &str, needs: &[&str], test: impl FnOnce(&mut Lab) -> Result<(), E>) {
    if let Err(e) = check_requirements(needs) {
        if under_ci() {
            panic!("lab test {name} cannot run under CI=true: {e}");
        }
        skip_message(name, &e);
        return;
    }
    let mut lab = match Lab::new(name) {
        Ok(lab) => lab,
        Err(e) => panic!("lab test {name}: cannot build the lab: {e}"),
    };
    if let Err(e) = test(&mut lab) {
        lab.mark_failed();
        drop(lab);
        panic!("lab test {name} failed: {e}");
    }
}
