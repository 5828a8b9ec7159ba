//! Bounded waiting: poll a condition until it holds or a deadline passes. The lab never
//! loops without a deadline.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// How often [`wait_until`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `probe` every [`POLL_INTERVAL`] until it returns `Ok(Some(value))` (then returns
/// the value) or `timeout` has passed (then returns [`LabError::Timeout`] naming `what`,
/// with the last probe error if there was one). An `Err` from `probe` does not stop the
/// wait: the condition may still become true.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() >= timeout {
            let what = match last_err {
                Some(e) => format!("{what} (last error: {e})"),
                None => what.to_owned(),
            };
            return Err(LabError::Timeout { what, after: start.elapsed() });
        }
        sleep(POLL_INTERVAL);
    }
}

/// Like [`wait_until`] for a plain boolean condition.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    wait_until(what, timeout, || Ok(cond().then_some(())))
}
