//! Landlock (landlock(7)): after start-up a process keeps only the file access it needs.
//! Best effort: the crate finds the kernel's ABI and enforces what it knows; a kernel
//! without Landlock leaves the process unrestricted, which [`restrict`] reports so that
//! the daemon can log it.
//!
//! Every file right the kernel knows is handled (denied), then given back beneath the
//! paths of a [`Paths`]: read (a configuration file read again on SIGHUP, the name
//! service's files), read and execute (a hook script and the programs it runs, the C
//! library's name-service modules), and connecting to a named socket (`/dev/log`).
//! Landlock is per thread: it must be entered before the process starts its threads,
//! which inherit it (the kernel's TSYNC flag is asked for too where it exists).

use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, RestrictSelfAttr, RestrictionStatus, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
};

/// The newest ABI this file knows; older kernels get the subset they support.
const ABI_WANTED: ABI = ABI::V10;

/// What stays reachable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    /// Files or directories read (beneath).
    pub read: Vec<PathBuf>,
    /// Files or directories read and executed (beneath).
    pub execute: Vec<PathBuf>,
    /// Named sockets connected to.
    pub connect: Vec<PathBuf>,
}

/// The files the C library's name service reads (getaddrinfo: a client resolving its
/// server's name again), and where its modules and the programs a hook runs live.
pub const NAME_SERVICE: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
];
/// The system's libraries (the name service's modules are loaded on first use).
pub const LIBRARIES: &[&str] = &["/lib", "/lib64", "/usr/lib", "/usr/lib64"];
/// The syslog socket.
pub const SYSLOG: &str = "/dev/log";

/// How far the restriction went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for is enforced.
    Full,
    /// The kernel enforces part of it (an older ABI).
    Partial,
    /// The kernel has no Landlock (or it is disabled).
    None,
}

fn rules_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("landlock: {e}"))
}

/// Restricts the calling thread (and the threads it starts afterwards) to `paths`.
pub fn restrict(paths: &Paths) -> std::io::Result<Outcome> {
    let read = AccessFs::from_read(ABI_WANTED) & !AccessFs::Execute;
    let execute = AccessFs::from_read(ABI_WANTED);
    let status: RestrictionStatus = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(rules_error)?
        .create()
        .map_err(rules_error)?
        .add_rules(path_beneath_rules(&paths.read, read))
        .map_err(rules_error)?
        .add_rules(path_beneath_rules(&paths.execute, execute))
        .map_err(rules_error)?
        .add_rules(path_beneath_rules(&paths.connect, AccessFs::ResolveUnix | AccessFs::WriteFile))
        .map_err(rules_error)?
        .all_threads(true)
        .map_err(rules_error)?
        .restrict_self()
        .map_err(rules_error)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Outcome::Full,
        RulesetStatus::PartiallyEnforced => Outcome::Partial,
        RulesetStatus::NotEnforced => Outcome::None,
    })
}
