//! Miredo's programs as entry points of the `teredo` binary, chosen by the name it is
//! started under (`argv[0]`, so that symbolic links `miredo`, `miredo-server` and
//! `miredo-checkconf` to it replace Debian's packages): each takes Miredo's command line
//! (miredo-facts §1.2) and Miredo's defaults as Debian builds them, and runs the matching
//! subcommand of the one clap definition in [`super`]:
//!
//! - `miredo [-c FILE] [-f] [-p PIDFILE] [-t DIR] [-u USER] [SERVER_NAME]` is `teredo run`
//!   reading `/etc/miredo/miredo.conf`, logging as `miredo`, with the PID file
//!   `/var/run/miredo.pid` when detached, Debian's hook `/etc/miredo/client-hook` (see
//!   [`Flavour::Miredo`]) and the user `miredo` where it exists;
//! - `miredo-server [...] [SERVER_ADDRESS]` is `teredo server` reading
//!   `/etc/miredo/miredo-server.conf`, likewise;
//! - `miredo-checkconf [-c FILE] [-f] [-p FILE] [-t DIR] [-u USER] [CONF_FILE]` is
//!   `teredo check-config` of `miredo.conf`: the file is the first positional argument,
//!   else `-c`, else `/etc/miredo/miredo.conf`; `-f -p -t -u` are accepted and ignored, as
//!   Miredo's are (Debian's unit runs `miredo-checkconf -f /etc/miredo/miredo.conf`).
//!
//! The user: Debian builds Miredo with `--enable-miredo-user`, so both daemons drop to
//! `miredo` by default. Where no `miredo` user exists (Miredo was never installed, or was
//! purged) they take the package's `teredo` user, and `nobody` where neither exists.
//!
//! Differences from Miredo 1.2.6, on purpose: a daemon in the foreground writes a PID
//! file only with `-p` (Miredo's writes `/var/run/NAME.pid` then too). `miredo-checkconf`
//! reads host names without resolving them (Miredo's fails on any name it cannot resolve at
//! that moment, before the network is up for instance) and reads a last line that has no
//! newline (Miredo skips it); it refuses what Miredo's checker passes and Miredo's daemon or
//! the kernel then refuses (a server address that is not global unicast, an `InterfaceMTU`
//! below 1280, a `Prefix` in ff00::/8, an `InterfaceName` over 15 bytes), and fails on the
//! deprecation warning of `RelayType restricted`, as `teredo check-config` fails on every
//! warning; it exits with 1, not 255, on a bad file. The test `checkconf_agrees_with_debians`
//! (tests/cli) compares both checkers on each of these cases.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::check_config::{self, CheckConfigArgs};
use crate::daemon::Flavour;
use crate::daemon::run::{self, RunArgs};
use crate::daemon::server::{self, ServerArgs};

/// The program the binary was started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// `teredo` and any other name: the subcommands of [`super::Cli`].
    Teredo,
    /// `miredo`: `teredo run` with Miredo's defaults.
    Miredo,
    /// `miredo-server`: `teredo server` with Miredo's defaults.
    MiredoServer,
    /// `miredo-checkconf`: `teredo check-config` of a `miredo.conf`.
    MiredoCheckconf,
}

impl EntryPoint {
    /// The entry point named by `argv0`, whatever directory it was started from.
    pub fn from_argv0(argv0: &std::ffi::OsStr) -> Self {
        match Path::new(argv0).file_name().and_then(|n| n.to_str()) {
            Some("miredo") => Self::Miredo,
            Some("miredo-server") => Self::MiredoServer,
            Some("miredo-checkconf") => Self::MiredoCheckconf,
            _ => Self::Teredo,
        }
    }

    /// The program's name, as Miredo's usage messages show it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Teredo => "teredo",
            Self::Miredo => "miredo",
            Self::MiredoServer => "miredo-server",
            Self::MiredoCheckconf => "miredo-checkconf",
        }
    }

    /// The clap command of this entry point (for `--help`, the man pages and the
    /// completions); `None` for `teredo` itself, which is [`super::Cli`].
    pub fn command(self) -> Option<Command> {
        let version = concat!("(teredo ", env!("CARGO_PKG_VERSION"), ")");
        let base = Command::new(self.name()).version(version);
        match self {
            Self::Teredo => None,
            Self::Miredo => Some(
                RunArgs::augment_args(base)
                    .about(
                        "Teredo client or relay (RFC 4380), as Miredo's miredo: `teredo run` \
                         reading /etc/miredo/miredo.conf",
                    )
                    .long_about(None)
                    .mut_arg("user", miredo_user_arg),
            ),
            Self::MiredoServer => Some(
                ServerArgs::augment_args(base)
                    .about(
                        "Teredo server (RFC 4380), as Miredo's miredo-server: `teredo server` \
                         reading /etc/miredo/miredo-server.conf",
                    )
                    .long_about(None)
                    .mut_arg("user", miredo_user_arg),
            ),
            // Miredo's checkconf takes an option twice without complaint.
            Self::MiredoCheckconf => Some(
                MiredoCheckconfArgs::augment_args(base)
                    .about(
                        "Checks a Miredo client or relay configuration file, as Miredo's \
                         miredo-checkconf: `teredo check-config`",
                    )
                    .long_about(None)
                    .args_override_self(true),
            ),
        }
    }
}

/// The arguments of `miredo-checkconf`: Miredo's getopt string `c:fhp:t:u:V`, of which only
/// `-c` (and the positional file, which wins over it) has an effect.
#[derive(Debug, Args)]
pub struct MiredoCheckconfArgs {
    /// The file to check, when no CONF_FILE is given.
    #[arg(short = 'c', long = "config", visible_alias = "conf", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ignored (accepted as by Miredo's miredo-checkconf).
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Ignored.
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Ignored.
    #[arg(short = 't', long = "chrootdir", visible_alias = "chroot", value_name = "DIR")]
    pub chroot: Option<PathBuf>,
    /// Ignored.
    #[arg(short = 'u', long = "user", visible_alias = "username", value_name = "USER")]
    pub user: Option<String>,
    /// The file to check [default: /etc/miredo/miredo.conf]; arguments after the first
    /// are ignored, as by Miredo.
    #[arg(value_name = "CONF_FILE")]
    pub files: Vec<PathBuf>,
}

impl MiredoCheckconfArgs {
    /// The `teredo check-config` this command line means.
    pub fn check_config(&self) -> CheckConfigArgs {
        CheckConfigArgs { server: false, file: self.files.first().cloned().or_else(|| self.config.clone()) }
    }
}

/// `-u` of Miredo's daemons: the default shown is Miredo's, `miredo`, so that `--help` and
/// the man pages are the same on every machine; [`run`] takes [`miredo_user`] instead when
/// `-u` is not given.
fn miredo_user_arg(a: clap::Arg) -> clap::Arg {
    a.default_value("miredo").help(
        "Unprivileged user the packet path runs as (never root): miredo where it exists, else \
         teredo, else nobody",
    )
}

/// The user of `matches`: the one `-u` names, else [`miredo_user`].
fn daemon_user(matches: &ArgMatches, given: &str) -> String {
    match matches.value_source("user") {
        Some(clap::parser::ValueSource::DefaultValue) | None => miredo_user().to_owned(),
        Some(_) => given.to_owned(),
    }
}

/// The user Miredo's daemons drop to by default: `miredo` where it exists, else the
/// package's `teredo`, else `nobody`.
pub fn miredo_user() -> &'static str {
    ["miredo", "teredo"]
        .into_iter()
        .find(|u| teredo_net::privileges::lookup_user(u).is_ok())
        .unwrap_or("nobody")
}

/// Runs the Miredo program `entry` with the whole command line `args`, `argv[0]` first;
/// returns the exit status. A bad command line exits with 2, `-h` and `-V` with 0, from
/// clap, as `teredo` does. [`EntryPoint::Teredo`] is no Miredo program: exit status 2.
pub(super) fn run(entry: EntryPoint, args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let Some(command) = entry.command() else {
        return 2;
    };
    let matches = command.get_matches_from(args);
    match entry {
        EntryPoint::Teredo => 2,
        EntryPoint::Miredo => parsed::<RunArgs>(&matches).map_or(2, |mut a| {
            a.daemon.user = daemon_user(&matches, &a.daemon.user);
            run::run_as(&a, Flavour::Miredo)
        }),
        EntryPoint::MiredoServer => parsed::<ServerArgs>(&matches).map_or(2, |mut a| {
            a.daemon.user = daemon_user(&matches, &a.daemon.user);
            server::run_as(&a, Flavour::Miredo)
        }),
        EntryPoint::MiredoCheckconf => parsed::<MiredoCheckconfArgs>(&matches)
            .map_or(2, |a| check_config::run(&a.check_config(), out, err).unwrap_or(super::EXIT_FAILURE)),
    }
}

fn parsed<T: FromArgMatches>(matches: &ArgMatches) -> Option<T> {
    T::from_arg_matches(matches).map_err(|e| e.print()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: FromArgMatches>(entry: EntryPoint, args: &[&str]) -> Result<T, clap::Error> {
        let m = entry.command().expect("a Miredo entry point").try_get_matches_from(args)?;
        T::from_arg_matches(&m)
    }

    #[test]
    fn argv0_names_the_entry_point() {
        assert_eq!(EntryPoint::from_argv0("/usr/sbin/miredo".as_ref()), EntryPoint::Miredo);
        assert_eq!(EntryPoint::from_argv0("miredo-server".as_ref()), EntryPoint::MiredoServer);
        assert_eq!(EntryPoint::from_argv0("./miredo-checkconf".as_ref()), EntryPoint::MiredoCheckconf);
        assert_eq!(EntryPoint::from_argv0("/usr/sbin/teredo".as_ref()), EntryPoint::Teredo);
        assert_eq!(EntryPoint::from_argv0("miredo.sh".as_ref()), EntryPoint::Teredo);
    }

    #[test]
    fn miredo_command_lines() {
        let m = EntryPoint::Miredo.command().unwrap().try_get_matches_from(["miredo", "-f"]).unwrap();
        let a = RunArgs::from_arg_matches(&m).unwrap();
        assert!(a.daemon.foreground);
        assert_eq!(a.daemon.config, None, "the default file is teredo run's: /etc/miredo/miredo.conf");
        assert_eq!(daemon_user(&m, &a.daemon.user), miredo_user());
        let m = EntryPoint::Miredo.command().unwrap().try_get_matches_from(["miredo", "-u", "x"]).unwrap();
        assert_eq!(daemon_user(&m, "x"), "x");
        let a: RunArgs = parse(
            EntryPoint::Miredo,
            &["miredo", "--conf", "/x.conf", "--pidfile", "/p", "--username", "u", "--chroot", "/t", "srv"],
        )
        .unwrap();
        assert_eq!(a.daemon.config.as_deref(), Some(Path::new("/x.conf")));
        assert_eq!(a.daemon.pidfile.as_deref(), Some(Path::new("/p")));
        assert_eq!(a.daemon.user, "u");
        assert_eq!(a.daemon.chroot.as_deref(), Some(Path::new("/t")));
        assert_eq!(a.server_name.as_deref(), Some("srv"));
        // Miredo: "Duplicate parameter" and a second positional argument are syntax errors.
        for bad in [&["miredo", "-f", "-f"][..], &["miredo", "-c", "a", "-c", "b"], &["miredo", "s1", "s2"]] {
            let e = parse::<RunArgs>(EntryPoint::Miredo, bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        let s: ServerArgs =
            parse(EntryPoint::MiredoServer, &["miredo-server", "-u", "miredo-server"]).unwrap();
        assert_eq!(s.daemon.user, "miredo-server");
        assert!(!s.daemon.foreground);
    }

    #[test]
    fn checkconf_command_lines() {
        let file = |args: &[&str]| {
            parse::<MiredoCheckconfArgs>(EntryPoint::MiredoCheckconf, args).unwrap().check_config().file
        };
        assert_eq!(file(&["miredo-checkconf"]), None);
        assert_eq!(
            file(&["miredo-checkconf", "-f", "/etc/miredo/miredo.conf"]),
            Some("/etc/miredo/miredo.conf".into())
        );
        assert_eq!(file(&["miredo-checkconf", "-c", "a", "b"]), Some("b".into()));
        assert_eq!(file(&["miredo-checkconf", "-c", "a"]), Some("a".into()));
        assert_eq!(file(&["miredo-checkconf", "a", "b"]), Some("a".into()));
        assert_eq!(
            file(&["miredo-checkconf", "-f", "-f", "-u", "x", "-p", "y", "-t", "/", "a"]),
            Some("a".into())
        );
    }
}
