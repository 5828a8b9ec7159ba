//! The seccomp allow-lists (seccomp(2), `SECCOMP_SET_MODE_FILTER`), one per kind of
//! process ([`Kind`]), compiled by seccompiler and installed on every thread at once
//! (`SECCOMP_FILTER_FLAG_TSYNC`); threads started later inherit them. A call outside the
//! list traps to [`super::sigsys`] (counted, reported, fails with EPERM).
//!
//! Each list was found by running the lab suite with the filter on and reading the
//! handler's reports; the comment on each entry says who needs it. Two rules narrow a call
//! by its arguments: `clone` only with `CLONE_THREAD` (threads, never a process: no
//! fork), and `ioctl` only with the requests the process makes. `clone3`'s flags are in
//! memory, out of the filter's reach, so a second filter makes it fail with ENOSYS, and
//! the C library falls back to `clone`, which the first filter checks.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use super::Kind;
use super::sigsys::TRAP_SUPPORTED;

/// What any of our processes does while it runs: memory, threads' own bookkeeping,
/// time, randomness, signals of its own, descriptors it already has, and leaving.
const BASE: &[libc::c_long] = &[
    // The allocator and thread stacks.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // Locks, channels, sleeping, time (the vDSO's fallback).
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    // Signals: the handler's return, the alternate stack std gives each thread, masks.
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    // Identity of the caller (logs, status), no change of it.
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    // Descriptors already open: logs on stderr, sockets, the TUN.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_lseek,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    // A thread's own end, and the process's.
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
];

/// The packet plane and control thread of a client, a relay or a server, after start-up.
const DAEMON: &[libc::c_long] = &[
    // Batched datagrams, the packet loops.
    libc::SYS_recvmmsg,
    libc::SYS_sendmmsg,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    libc::SYS_pipe2,
    // New threads (name resolution, UPnP, discovery, restarted workers): clone is
    // narrowed to CLONE_THREAD below.
    libc::SYS_clone3,
    libc::SYS_sched_setaffinity,
    // Reaping the privileged helper at the end.
    libc::SYS_wait4,
    // The signal thread (sigwait).
    libc::SYS_rt_sigtimedwait,
    // The control socket and the metrics listener (its new address after a reload),
    // random sockets, UPnP, relay health probes, name resolution.
    libc::SYS_socket,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_setsockopt,
    libc::SYS_getpeername,
    libc::SYS_shutdown,
    libc::SYS_dup,
    libc::SYS_dup3,
    // Reading the configuration again on SIGHUP (Landlock bounds which files).
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_pread64,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getrlimit,
    libc::SYS_prlimit64,
];

/// The privileged helper without a hook: its socket to the daemon, netlink, its logs.
const HELPER: &[libc::c_long] = &[libc::SYS_socket, libc::SYS_bind, libc::SYS_connect, libc::SYS_setsockopt];

/// A hook script inherits the helper's filter across execve, and a shell script may run
/// anything, so the hook helper's list cannot be an allow-list of our own calls: it is
/// everything a shell and `ip` need, i.e. all but the calls below, which no hook needs and
/// which would widen the attack surface (tracing other processes, mounts, modules, keys,
/// namespaces, BPF, raw memory of others, reboot, swap, time, personality, user faults).
const HOOK_DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_personality,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_adjtimex,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_io_uring_setup,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_fanotify_init,
];

/// The requests `ioctl` may carry in a daemon: std's `set_nonblocking` (FIONBIO) and
/// reading how much is queued (FIONREAD). No TUN, no interface request: the TUN was set
/// up before, as root.
#[allow(clippy::unnecessary_cast)] // the requests' type differs between C libraries
const DAEMON_IOCTLS: &[u64] = &[libc::FIONBIO as u64, libc::FIONREAD as u64];
/// The helper: FIONBIO, and the interface name of its index (SIOCGIFNAME) to bring it
/// up and down.
#[allow(clippy::unnecessary_cast)] // as above
const HELPER_IOCTLS: &[u64] = &[libc::FIONBIO as u64, libc::SIOCGIFNAME as u64, libc::SIOCGIFINDEX as u64];

fn arch() -> io::Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e.to_string()))
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn eq(arg: u8, value: u64) -> io::Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value).map_err(other)
}

/// `ioctl(fd, request, …)` for the given requests only.
fn ioctl_rules(requests: &[u64]) -> io::Result<Vec<SeccompRule>> {
    requests.iter().map(|&r| SeccompRule::new(vec![eq(1, r)?]).map_err(other)).collect()
}

/// `clone(flags, …)` with CLONE_THREAD set: a thread, not a process.
fn thread_only() -> io::Result<Vec<SeccompRule>> {
    let flag = libc::CLONE_THREAD as u64;
    let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
        .map_err(other)?;
    Ok(vec![SeccompRule::new(vec![c]).map_err(other)?])
}

/// The action for a call outside the list.
fn deny() -> SeccompAction {
    if TRAP_SUPPORTED { SeccompAction::Trap } else { SeccompAction::Errno(libc::EPERM as u32) }
}

/// The filters of `kind`, in the order they are installed.
pub(super) fn programs(kind: Kind) -> io::Result<Vec<BpfProgram>> {
    let arch = arch()?;
    let compile = |f: SeccompFilter| -> io::Result<BpfProgram> { f.try_into().map_err(other) };
    if kind == Kind::HookHelper {
        let rules: BTreeMap<i64, Vec<SeccompRule>> = HOOK_DENIED.iter().map(|&n| (n, Vec::new())).collect();
        return Ok(vec![compile(
            SeccompFilter::new(rules, SeccompAction::Allow, deny(), arch).map_err(other)?,
        )?]);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BASE.iter().map(|&n| (n, Vec::new())).collect();
    let (extra, ioctls) = match kind {
        Kind::Daemon => (DAEMON, DAEMON_IOCTLS),
        Kind::Helper => (HELPER, HELPER_IOCTLS),
        Kind::HookHelper => unreachable!("handled above"),
    };
    rules.extend(extra.iter().map(|&n| (n, Vec::new())));
    rules.insert(libc::SYS_ioctl, ioctl_rules(ioctls)?);
    if kind == Kind::Daemon {
        rules.insert(libc::SYS_clone, thread_only()?);
    }
    let mut programs = Vec::new();
    if kind == Kind::Daemon {
        // clone3 → ENOSYS (module comment). ERRNO ranks below TRAP, so the allow-list
        // must allow clone3 for this one's answer to count; and this one goes first, as
        // the allow-list denies seccomp(2) itself.
        let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
        let no_clone3 = SeccompAction::Errno(libc::ENOSYS as u32);
        programs.push(compile(
            SeccompFilter::new(clone3, SeccompAction::Allow, no_clone3, arch).map_err(other)?,
        )?);
    }
    programs.push(compile(SeccompFilter::new(rules, deny(), SeccompAction::Allow, arch).map_err(other)?)?);
    Ok(programs)
}

/// Installs `programs` on every thread of the process.
pub(super) fn apply(programs: &[BpfProgram]) -> io::Result<()> {
    for p in programs {
        seccompiler::apply_filter_all_threads(p).map_err(other)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles() {
        for kind in [Kind::Daemon, Kind::Helper, Kind::HookHelper] {
            let p = programs(kind).unwrap();
            assert!(!p.is_empty() && p.iter().all(|p| !p.is_empty()), "{kind:?}");
        }
    }

    #[test]
    fn lists_are_disjoint_from_the_denied_ones() {
        for n in BASE.iter().chain(DAEMON).chain(HELPER) {
            assert!(!HOOK_DENIED.contains(n), "system call {n} both allowed and denied");
        }
    }
}
