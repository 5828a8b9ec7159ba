//! The section-8 man pages generated from the command line by clap_mangen: `teredo(8)`,
//! one page per subcommand (`teredo-run(8)`...), and the Miredo entry points
//! (`miredo(8)`, `miredo-server(8)`, `miredo-checkconf(8)`), each followed by sections
//! written here that the command line does not hold (exit status, files, see also).

use std::path::PathBuf;

use clap::{Command, CommandFactory};
use clap_mangen::Man;
use teredo::cli::miredo::EntryPoint;

use crate::DistFile;

/// The manual the pages belong to (the centre of their footer).
const MANUAL: &str = "System Administration";

/// Every section-8 page, at `man/man8/NAME.8`.
pub fn pages() -> std::io::Result<Vec<DistFile>> {
    let mut teredo = teredo::cli::Cli::command().disable_help_subcommand(true);
    teredo.build();
    let mut pages = vec![page(teredo.clone(), &extra("teredo"))?];
    for sub in teredo.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("teredo-{}", sub.get_name());
        pages.push(page(sub.clone(), &extra(&name))?);
    }
    for entry in [EntryPoint::Miredo, EntryPoint::MiredoServer, EntryPoint::MiredoCheckconf] {
        if let Some(mut cmd) = entry.command() {
            cmd.build();
            pages.push(page(cmd, &extra(entry.name()))?);
        }
    }
    Ok(pages)
}

/// Renders `cmd` (built, so that a subcommand's display name is `teredo-NAME`) followed
/// by the roff `tail`.
fn page(cmd: Command, tail: &str) -> std::io::Result<DistFile> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_owned();
    let source = format!("teredo {}", env!("CARGO_PKG_VERSION"));
    let man =
        Man::new(cmd).title(name.to_uppercase()).section("8").date(date()).source(source).manual(MANUAL);
    let mut contents = Vec::new();
    man.render(&mut contents)?;
    contents.extend_from_slice(tail.as_bytes());
    Ok(DistFile { path: PathBuf::from(format!("man/man8/{name}.8")), contents })
}

/// The date of the pages, `YYYY-MM-DD`: that of `SOURCE_DATE_EPOCH` (seconds since 1970,
/// which `scripts/package` sets to the last commit's time, so that a build is
/// reproducible), else today's.
fn date() -> String {
    let secs =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
        });
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The hand-written sections of the page `name`.
fn extra(name: &str) -> String {
    let exit = ".SH \"EXIT STATUS\"\n0 on success, 1 when the command fails (a bad configuration file, a \
                failure to start), 2 for a bad command line.\n";
    let (files, see) = match name {
        "teredo" => (
            FILES_CLIENT.to_owned() + FILES_SERVER + FILES_UNITS,
            "teredo\\-run (8), teredo\\-server (8), teredo\\-check\\-config (8), teredo\\-status (8), \
             teredo\\-address (8), miredo.conf (5), miredo\\-server.conf (5), miredo (8), miredo\\-server (8), \
             miredo\\-checkconf (8), systemctl (1)",
        ),
        "teredo-run" => (
            SANDBOX.to_owned() + FILES_CLIENT + FILES_UNITS,
            "teredo (8), miredo.conf (5), miredo (8), teredo\\-status (8)",
        ),
        "teredo-server" => {
            (SANDBOX.to_owned() + FILES_SERVER, "teredo (8), miredo\\-server.conf (5), miredo\\-server (8)")
        }
        "teredo-check-config" => {
            (String::new(), "teredo (8), miredo.conf (5), miredo\\-server.conf (5), miredo\\-checkconf (8)")
        }
        "miredo" => (
            MIREDO.to_owned() + FILES_CLIENT,
            "teredo (8), teredo\\-run (8), miredo.conf (5), miredo\\-checkconf (8)",
        ),
        "miredo-server" => (
            MIREDO_SERVER.to_owned() + FILES_SERVER,
            "teredo (8), teredo\\-server (8), miredo\\-server.conf (5)",
        ),
        "miredo-checkconf" => {
            (MIREDO_CHECKCONF.to_owned(), "teredo (8), teredo\\-check\\-config (8), miredo.conf (5)")
        }
        _ => (String::new(), "teredo (8)"),
    };
    let see: Vec<String> = see
        .split(", ")
        .map(|s| {
            let (page, section) = s.split_once(' ').unwrap_or((s, ""));
            format!(".BR {page} {section}")
        })
        .collect();
    format!("{exit}{files}.SH \"SEE ALSO\"\n{}\n", see.join(",\n"))
}

const SANDBOX: &str = ".SH SANDBOX\nAfter set-up the daemon drops root for the user of\n.B \\-u\n(by default\n\
    .BR teredo ,\nthe system user the package creates, or\n.B nobody\nwhere no such user exists), with no \
    capability left, and then confines itself on Linux: a seccomp filter on every thread allows only the \
    system calls the daemon makes (a call outside it fails with EPERM, is reported on standard error with \
    its number, and is counted as\n.B seccomp_denied\nin\n.BR teredo\\-status (8)\nand as\n\
    .B teredo_seccomp_denied_total\nin the metrics); Landlock, where the kernel has it, leaves only reading \
    the directory of the configuration file (and of the files it names), the name service's files and the \
    libraries; no core file, a bound on open files, and the process is not dumpable. A client's or relay's \
    privileged helper gets its own, smaller filter, no file access and no new process; with a\n\
    .B ClientHook\nthe hook, the administrator's own program, may start programs and use files, and a short \
    list of calls (ptrace, mount, modules, keys, namespaces, BPF...) is denied to it.\n\
    .B \\-\\-no\\-seccomp\nturns the filters off, for a kernel or C library whose calls they do not know; \
    the rest stays.\n";
const FILES_CLIENT: &str = ".SH FILES\n.TP\n.I /etc/miredo/miredo.conf\nThe client or relay configuration, \
    see\n.BR miredo.conf (5).\n.TP\n.I /etc/miredo/client\\-hook\nDebian's client hook, which\n.B miredo\nruns \
    (see\n.B ClientHook\nin\n.BR miredo.conf (5)).\n";
const FILES_SERVER: &str = ".SH FILES\n.TP\n.I /etc/miredo/miredo\\-server.conf\nThe server configuration, see\n\
    .BR miredo\\-server.conf (5).\n";
const FILES_UNITS: &str = ".TP\n.I /usr/lib/systemd/system/teredo.service\nThe client or relay of \
    /etc/miredo/miredo.conf (alias miredo.service); teredo\\-server.service (alias miredo\\-server.service) is \
    the server, teredo@NAME.service a client or relay of /etc/teredo/NAME.conf.\n";

const MIREDO: &str = ".SH MIREDO\nThis is the teredo binary started as\n.BR miredo ,\nas the teredo package \
    installs it in place of Debian's Miredo: it takes Miredo's command line and runs\n.BR teredo\\-run (8)\nwith \
    Miredo's defaults: the file\n.IR /etc/miredo/miredo.conf ,\nthe user\n.B miredo\nwhere it exists (else\n\
    .BR teredo ,\nelse\n.BR nobody ),\nDebian's hook\n.I /etc/miredo/client\\-hook\nwhen it exists and the file \
    names no\n.BR ClientHook ,\nthe name miredo in messages and in syslog, and the PID file\n.I /var/run/miredo.pid\n\
    when it detaches (in the foreground, only with\n.BR \\-p ).\n";
const MIREDO_SERVER: &str = ".SH MIREDO\nThis is the teredo binary started as\n.BR miredo\\-server :\nit takes \
    Miredo's command line and runs\n.BR teredo\\-server (8)\nwith Miredo's defaults: the file\n\
    .IR /etc/miredo/miredo\\-server.conf ,\nthe user\n.B miredo\nwhere it exists (else\n.BR teredo ,\nelse\n\
    .BR nobody ),\nthe name miredo\\-server in messages and in syslog, and the PID file\n\
    .I /var/run/miredo\\-server.pid\nwhen it detaches.\n";
const MIREDO_CHECKCONF: &str = ".SH MIREDO\nThis is the teredo binary started as\n.BR miredo\\-checkconf :\nit \
    runs\n.BR teredo\\-check\\-config (8)\non CONF_FILE, else the file of\n.BR \\-c ,\nelse\n\
    .IR /etc/miredo/miredo.conf ;\n.BR \\-f ,\n.BR \\-p ,\n.B \\-t\nand\n.B \\-u\nare accepted and ignored, as \
    Miredo's are.\nUnlike Miredo's, it does not resolve host names, reads a last line without a newline, and \
    refuses values that Miredo's checker passes and Miredo's daemon or the kernel refuses (a server address \
    that is not global unicast, an InterfaceMTU below 1280, a Prefix in ff00::/8, an InterfaceName over 15 \
    bytes); it fails on the deprecation warning of RelayType restricted, accepts a relay's ServerAddress (the \
    servers it probes) and a list of servers, and exits with 1 rather than 255.\n";

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
    }
}
