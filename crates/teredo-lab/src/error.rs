//! The lab's error type: every failure says which command ran, in which namespace, and
//! what it printed on stderr, so that a failing integration test explains itself.

use std::io;
use std::time::Duration;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command ran but exited unsuccessfully.
    #[error("`{cmd}` in namespace {ns} failed ({status}): {stderr}")]
    Command {
        /// The command line, as text.
        cmd: String,
        /// The namespace it ran in (`host` for the root namespace).
        ns: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("could not start `{cmd}` in namespace {ns}: {source}")]
    Spawn {
        /// The command line, as text.
        cmd: String,
        /// The namespace it was meant to run in.
        ns: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the wait lasted.
        after: Duration,
    },
    /// The lab cannot run on this machine (not root, no namespaces, missing tools).
    #[error("the network-namespace lab cannot run here: {0}")]
    Unavailable(String),
    /// Output could not be understood, or a request is outside the lab's limits.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for the lab.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}
