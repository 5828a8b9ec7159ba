//! What one process is and what CPU it has used, from `/proc/PID/stat` (proc(5)): its
//! command, state, parent and process group, and its user and system time; from
//! `/proc/PID/status`, its resident memory; and, from `/proc/PID/task/*/status`, how often
//! its live threads were switched out. The lab uses it to wait for its daemons, the
//! benches to find a daemon's processes and print the CPU they used and where (user space
//! or the kernel), so that a run shows what bounds it.

/// The fields of a `/proc/PID/stat` the lab and the benches use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (field 2, without its parentheses; it may hold spaces and parentheses).
    pub comm: String,
    /// The state letter (field 3): `R`, `S`, `D`, `Z`, `X`...
    pub state: char,
    /// The parent's pid (field 4).
    pub ppid: u32,
    /// The process group (field 5).
    pub pgrp: i32,
    /// User time of every thread, dead ones included (field 14), in clock ticks
    /// ([`ticks_per_second`]).
    pub utime: u64,
    /// System time (in the kernel on the process's behalf), likewise (field 15).
    pub stime: u64,
}

impl ProcStat {
    /// Whether the process has not exited (neither a zombie nor dead).
    pub fn alive(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// `/proc/PID/stat` of `pid`, if it exists and reads as proc(5) says.
pub fn read(pid: u32) -> Option<ProcStat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A [`ProcStat`] out of the text of a `/proc/PID/stat`.
fn parse(stat: &str) -> Option<ProcStat> {
    // The command is in parentheses and may contain anything, ")" included: it ends at the
    // last ")".
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    Some(ProcStat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}

/// Clock ticks per second, the unit of [`ProcStat::utime`] and `stime` (100 if unknown).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The user and system CPU seconds the processes `pids` used so far, summed (those that
/// are gone count nothing).
pub fn cpu_secs(pids: &[u32]) -> (f64, f64) {
    let hz = ticks_per_second() as f64;
    pids.iter()
        .filter_map(|&p| read(p))
        .fold((0.0, 0.0), |(u, s), p| (u + p.utime as f64 / hz, s + p.stime as f64 / hz))
}

/// The pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| read(p).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// How often the live threads of `pid` were switched out so far, summed over
/// `/proc/PID/task/*/status`: (voluntary, involuntary). A voluntary switch is a wait (for
/// a packet, a lock); an involuntary one is a preemption, another task taking the CPU. The
/// switches of threads that have exited are not counted (unlike [`ProcStat::utime`]), so
/// for a process whose threads come and go this is a lower bound.
pub fn context_switches(pid: u32) -> Option<(u64, u64)> {
    Some(thread_statuses(pid).ok()?.iter().fold((0, 0), |(v, n), (_, s)| {
        let (dv, dn) = switches(s);
        (v + dv, n + dn)
    }))
}

/// The (voluntary, involuntary) context switches in the text of a `status` file; 0 for a
/// line that is missing.
fn switches(status: &str) -> (u64, u64) {
    let count = |name| status_number(status, name).unwrap_or(0);
    (count("voluntary_ctxt_switches"), count("nonvoluntary_ctxt_switches"))
}

/// The resident memory of `pid` (`VmRSS` of `/proc/PID/status`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_number(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS")
}

/// The value of line `name` in the text of a `status` file, trimmed (`CapEff:\t0000…`
/// gives `0000…`); `None` when there is no such line.
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// The number that starts the value of line `name` in the text of a `status` file
/// (`VmRSS:\t  1234 kB` gives 1234).
fn status_number(status: &str, name: &str) -> Option<u64> {
    status_field(status, name)?.split_whitespace().next()?.parse().ok()
}

/// The `/proc/PID/task/TID/status` text of every live thread of `pid`, by thread id in
/// ascending order. A thread that exits while they are read is left out; a process that
/// is gone is an error.
pub fn thread_statuses(pid: u32) -> std::io::Result<Vec<(u32, String)>> {
    let mut out: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            Some((tid, std::fs::read_to_string(e.path().join("status")).ok()?))
        })
        .collect();
    out.sort_unstable_by_key(|&(tid, _)| tid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{ProcStat, parse, status_field, status_number, switches};

    #[test]
    fn reads_the_fields_after_a_command_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 120 0 0 0 \
                    731 96 0 0 20 0 3 0 1234 10000 200 18446744073709551615\n";
        let want =
            ProcStat { comm: "a (b) c".to_owned(), state: 'S', ppid: 17, pgrp: 4242, utime: 731, stime: 96 };
        assert_eq!(parse(stat), Some(want));
        assert!(!parse("1 (x) Z 1 1 1 0 -1 0 0 0 0 0 0 0\n").unwrap().alive());
    }

    #[test]
    fn refuses_a_truncated_or_garbled_stat() {
        assert_eq!(parse("4242 (x) S 17 4242\n"), None, "no utime or stime");
        assert_eq!(parse("4242 (x) S p 1 1 0 -1 0 0 0 0 0 1 2\n"), None, "a ppid that is not a number");
        assert_eq!(parse("4242 x S 17 1 1 0 -1 0 0 0 0 0 1 2\n"), None, "no parentheses");
    }

    #[test]
    fn reads_both_kinds_of_context_switch() {
        let status = "Name:\tteredo\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1500\n\
                      nonvoluntary_ctxt_switches:\t37\n";
        assert_eq!(switches(status), (1500, 37));
        assert_eq!(switches("Name:\tx\n"), (0, 0), "lines missing");
        assert_eq!(status_number("VmPeak:\t  9000 kB\nVmRSS:\t  1234 kB\n", "VmRSS"), Some(1234));
        assert_eq!(status_number("VmRSSx:\t 1 kB\n", "VmRSS"), None, "another line's prefix");
    }

    #[test]
    fn reads_a_text_field_trimmed() {
        let status = "Name:\tteredo\nUid:\t0\t0\t0\t0\nCapEff:\t0000000000001000\n";
        assert_eq!(status_field(status, "CapEff"), Some("0000000000001000"));
        assert_eq!(status_field(status, "Uid"), Some("0\t0\t0\t0"));
        assert_eq!(status_field(status, "Cap"), None, "a prefix of a name is not the name");
        assert_eq!(status_field(status, "Gid"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = super::read(std::process::id()).expect("our own /proc/PID/stat");
        // The process's state is its main thread's, which waits for the test threads.
        assert!(me.alive() && me.ppid == std::os::unix::process::parent_id(), "{me:?}");
        let (voluntary, involuntary) = super::context_switches(std::process::id()).expect("our tasks");
        assert!(voluntary + involuntary > 0, "a test thread has been switched out at least once");
        let threads = super::thread_statuses(std::process::id()).expect("our tasks");
        assert!(threads.iter().any(|&(tid, _)| tid == std::process::id()), "the main thread is among them");
        assert!(threads.windows(2).all(|w| w[0].0 < w[1].0), "in ascending order of thread id");
        assert!(
            threads.iter().all(|(_, s)| status_field(s, "Tgid") == Some(&*std::process::id().to_string()))
        );
        assert!(super::thread_statuses(u32::MAX).is_err(), "no such process");
    }
}
