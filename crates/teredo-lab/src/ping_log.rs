//! A ping that runs while something happens, and the gap in its replies: `ping -6 -D`
//! (every reply stamped with its time) as a [`Daemon`] logging to the artifacts, and the
//! time from the last reply before an instant to the first reply after it ([`gap_after`]),
//! which is what a user sees of a failover.

use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::daemon::Daemon;
use crate::error::Result;
use crate::node::Node;
use crate::wait::wait_until;

/// Starts `ping -6 -n -D -i 0.2 -W 1 -w SECONDS TO` in `from`, named `name`.
pub fn start(from: &Node, name: &str, to: Ipv6Addr, seconds: u32) -> Result<Daemon> {
    let w = seconds.to_string();
    from.spawn(name, "ping", &["-6", "-n", "-D", "-i", "0.2", "-W", "1", "-w", &w, &to.to_string()])
}

/// The times (seconds since the epoch) of the replies in a `ping -D` log.
pub fn reply_times(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// The gap in the replies of `log` around `at` (seconds since the epoch): from the last
/// reply before it (or `at`) to the first after it; `None` while no reply came after.
pub fn gap_after(log: &str, at: f64) -> Option<f64> {
    let t = reply_times(log);
    let before = t.iter().copied().rev().find(|&x| x <= at).unwrap_or(at);
    let after = t.iter().copied().find(|&x| x > at)?;
    Some(after - before)
}

/// Now, in seconds since the epoch (the clock of `ping -D`).
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Waits until `ping` logs a reply after `at`; the gap, or `None` after `timeout`.
pub fn wait_gap(ping: &Daemon, at: f64, timeout: Duration) -> Option<f64> {
    wait_until("a ping reply", timeout, || Ok(gap_after(&ping.log(), at))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_from_a_ping_log() {
        let log = "PING 2001:db8:3::1 56 data bytes\n\
                   [100.0] 64 bytes from 2001:db8:3::1: icmp_seq=1 ttl=62 time=0.5 ms\n\
                   [100.2] 64 bytes from 2001:db8:3::1: icmp_seq=2 ttl=62 time=0.5 ms\n\
                   [103.6] 64 bytes from 2001:db8:3::1: icmp_seq=19 ttl=62 time=0.7 ms\n";
        assert_eq!(reply_times(log), [100.0, 100.2, 103.6]);
        let g = gap_after(log, 100.3).unwrap();
        assert!((g - 3.4).abs() < 1e-9, "{g}");
        assert_eq!(gap_after(log, 104.0), None);
        // No reply before: counted from the instant.
        assert!((gap_after(log, 99.0).unwrap() - 1.0).abs() < 1e-9);
    }
}
