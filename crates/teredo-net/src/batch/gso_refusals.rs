//! The UDP GSO messages the kernel refused, remembered by destination and segment size
//! (Linux only): a refusal (EIO from a route whose device cannot checksum a GSO packet,
//! EINVAL for a segment size it does not take) says nothing of other destinations, so
//! segmentation stays on for them and goes off only for what was refused, for a while
//! ([`REFUSAL_TTL`]), in a small bounded set ([`MAX_REFUSALS`], the oldest replaced).

use std::time::{Duration, Instant};

/// Most refusals remembered; a new one replaces the one that expires first.
pub(crate) const MAX_REFUSALS: usize = 16;
/// How long a refused (destination, segment size) is sent without segmentation, after
/// which it is tried again (a route or device may have changed).
pub(crate) const REFUSAL_TTL: Duration = Duration::from_secs(60);

/// One refused kind of message: a destination (address and port, as the kernel has
/// them, network order) and a segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    addr: u32,
    port: u16,
    segment: u16,
    until: Instant,
}

/// The refused kinds of GSO message (see the module comment).
#[derive(Debug, Default)]
pub(crate) struct GsoRefusals {
    set: Vec<Refusal>,
    /// GSO messages refused, in total.
    count: u64,
}

impl GsoRefusals {
    /// Records that a GSO message of `segment`-byte datagrams to `addr`:`port` was
    /// refused at `now`.
    pub(crate) fn refuse(&mut self, addr: u32, port: u16, segment: u16, now: Instant) {
        self.count += 1;
        let r = Refusal { addr, port, segment, until: now + REFUSAL_TTL };
        if let Some(old) = self.set.iter_mut().find(|o| (o.addr, o.port, o.segment) == (addr, port, segment))
        {
            *old = r;
        } else if self.set.len() < MAX_REFUSALS {
            self.set.push(r);
        } else if let Some(old) = self.set.iter_mut().min_by_key(|o| o.until) {
            *old = r;
        }
    }

    /// Whether messages of `segment`-byte datagrams to `addr`:`port` must go without
    /// segmentation.
    #[inline]
    pub(crate) fn refused(&self, addr: u32, port: u16, segment: u16) -> bool {
        !self.set.is_empty() && self.set.iter().any(|o| (o.addr, o.port, o.segment) == (addr, port, segment))
    }

    /// Forgets the refusals older than [`REFUSAL_TTL`] (reads the clock only when there
    /// are some).
    pub(crate) fn expire(&mut self) {
        if !self.set.is_empty() {
            let now = Instant::now();
            self.set.retain(|o| o.until > now);
        }
    }

    /// GSO messages refused so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Kinds of message refused now.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_destination_and_size_with_expiry() {
        let now = Instant::now();
        let mut r = GsoRefusals::default();
        r.refuse(1, 2, 1400, now);
        assert!(r.refused(1, 2, 1400));
        assert!(!r.refused(1, 2, 1000), "another size");
        assert!(!r.refused(1, 3, 1400), "another port");
        assert!(!r.refused(9, 2, 1400), "another address");
        r.refuse(1, 2, 1400, now);
        assert_eq!((r.len(), r.count()), (1, 2));
        for i in 0..100 {
            r.refuse(100 + i, 2, 1400, now + Duration::from_millis(u64::from(i) + 1));
        }
        assert_eq!(r.len(), MAX_REFUSALS);
        assert!(r.refused(199, 2, 1400), "the newest is kept");
        assert!(!r.refused(1, 2, 1400), "the oldest went");
        let mut old = GsoRefusals::default();
        old.refuse(1, 2, 1400, now - REFUSAL_TTL - Duration::from_secs(1));
        old.expire();
        assert!(!old.refused(1, 2, 1400));
        assert_eq!(old.count(), 1);
    }
}
