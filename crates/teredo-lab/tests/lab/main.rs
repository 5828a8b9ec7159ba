//! The lab's integration tests, in one test binary: the harness itself (topology, NAT
//! behaviours, cleanup) and Miredo 1.2.6 in every role (qualification behind each NAT
//! kind, client to client, client to native IPv6 through a relay). The Miredo runs are
//! the reference behaviour our own daemons will be compared with.
//!
//! They need root and network namespaces; without them they print SKIP, except under
//! `CI=true` where they fail.

mod cleanup;
mod miredo_roles;
mod topology;

/// The programs the Miredo tests need beyond the lab's own.
pub(crate) const MIREDO_NEEDS: &[&str] = &["miredo", "miredo-server"];

pub(crate) use teredo_lab::{TestResult, WAIT, ensure};
