//! Entry point for the `helper_messages` fuzz target and for the test that replays its
//! corpus on the stable toolchain: arbitrary bytes as the stream a compromised worker
//! writes to the privileged helper, cut into requests as the helper reads them, each
//! decided by [`decide`] as the helper's loop does, and the same bytes read as replies,
//! as the worker reads the helper's. Any panic is a bug.

use std::net::Ipv6Addr;

use super::message::{REPLY_LEN, REQUEST_LEN};
use super::{Decision, Refusal, Reply, Request, decide, validate_up};

/// The helper's session on `data`: requests until the first malformed one (which ends the
/// session, as the helper's loop does) or the end of the stream; then the worker's reading
/// of the same bytes as replies.
pub fn messages(data: &[u8]) {
    let mut applied = 0;
    for chunk in data.chunks(REQUEST_LEN) {
        // A short last chunk is what read_exact would not give: an end of file; decided
        // anyway, it must be refused as malformed.
        let d = decide(chunk);
        check(chunk, &d);
        if let Decision::Apply(_) = d {
            applied += 1;
        }
        if !d.continues() {
            break;
        }
    }
    assert!(applied <= data.len() / REQUEST_LEN);
    for chunk in data.chunks(REPLY_LEN) {
        if let Ok(r) = Reply::decode(chunk) {
            assert_eq!(&r.encode()[..], chunk, "a reply decodes from its only encoding");
            let _ = r.is_success();
        }
    }
    let _ = decide(data);
}

/// The helper's decision on one request: only a well-formed Up inside 2001::/32, not
/// multicast, with an MTU of at least 1280, or a well-formed Down, Announce or Withdraw
/// (which the backend of the other role refuses), is applied; a refusal
/// changes nothing and says why; anything else is malformed and ends the session.
fn check(bytes: &[u8], d: &Decision) {
    match *d {
        Decision::Apply(r) => {
            assert_eq!(&r.encode()[..], bytes, "applied a request from other bytes than its encoding");
            if let Request::Up { address, mtu } = r {
                assert!(
                    is_teredo(address) && !address.is_multicast() && mtu >= 1280,
                    "applied {address} {mtu}"
                );
                assert_eq!(validate_up(address, mtu), Ok(()));
            }
            assert_eq!(d.immediate_reply(), None);
            assert!(d.continues());
        }
        Decision::Refuse { address, mtu, refusal } => {
            assert_eq!(Request::decode(bytes), Ok(Request::Up { address, mtu }));
            assert!(!(is_teredo(address) && mtu >= 1280), "refused {address} {mtu}");
            assert_ne!(refusal, Refusal::Malformed);
            assert_eq!(validate_up(address, mtu), Err(refusal));
            let reply = d.immediate_reply().expect("a refusal is answered");
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
            assert!(d.continues());
        }
        Decision::Malformed(e) => {
            assert_eq!(Request::decode(bytes), Err(e));
            assert_eq!(d.immediate_reply(), Some(Reply::Refused(Refusal::Malformed)));
            assert!(!d.continues());
        }
    }
}

fn is_teredo(a: Ipv6Addr) -> bool {
    let s = a.segments();
    (s[0], s[1]) == (0x2001, 0)
}
