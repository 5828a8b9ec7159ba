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

use std::time::Duration;

/// What a lab test returns.
pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The programs the Miredo tests need beyond the lab's own.
pub(crate) const MIREDO_NEEDS: &[&str] = &["miredo", "miredo-server"];

/// The bound on every wait for qualification or for a first ping (Miredo qualifies in
/// about 0.12 s here).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Returns `Err(message)` from the test when `cond` is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+).into());
        }
    };
}
