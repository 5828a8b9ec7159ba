//! The Teredo protocol (RFC 4380, with the RFC 5991 security updates and the RFC 6081
//! extensions), sans-IO.
//!
//! This crate owns no socket, no thread and no clock: it parses and builds the wire
//! formats and decides what to do with packets. Time is always a parameter and
//! randomness is always passed in, so every rule can be tested deterministically.
//!
//! Modules, one per concept:
//! - [`address`]: Teredo addresses (RFC 4380 §4, RFC 5991 §3.1) and the IPv4
//!   global-unicast test;
//! - [`checksum`]: the Internet checksum (RFC 1071) and the IPv6 pseudo-header;
//! - [`wire`]: zero-copy views and builders for every packet Teredo exchanges;
//! - [`nonce`]: keyed tokens (RS nonces, echo-test tokens, bubble tokens);
//! - [`time`]: the instants the caller passes in;
//! - [`client`]: the client's qualification and maintenance (RFC 4380 §5.2.1, §5.2.5);
//! - [`endpoint`]: a client's qualification and data path held together;
//! - [`status`]: the status snapshots of the three roles, with named counters;
//! - [`peers`]: the list of recent peers shared by the client and the relay, with its
//!   packet queues (RFC 4380 §5.2, §5.2.6, §5.4);
//! - [`tunnel`]: the data path of a client and of a relay (RFC 4380 §5.2.3, §5.2.4,
//!   §5.2.6, §5.2.9, §5.4.1, §5.4.2; RFC 5991 §3.2);
//! - [`probe`]: a relay's probe of a Teredo server, the health of its IPv4 side;
//! - [`server`]: the Teredo server (RFC 4380 §5.3, RFC 5991 §3.2);
//! - [`secure`]: secure qualification (RFC 4380 §5.2.2), HMAC-SHA1 credentials;
//! - [`offload`]: TUN offload: the virtio-net header, TCP segmentation of what the TUN
//!   gives and coalescing of what it takes (RFC 9293, RFC 8200 §8.1).

#![warn(missing_docs)]
// No unsafe code in the protocol core: what it parses comes from the network. The tests
// alone may hold it (a counting global allocator, peers/tests.rs), each use allowed
// where it stands.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

pub mod address;
pub mod checksum;
pub mod client;
pub mod endpoint;
#[doc(hidden)]
pub mod fuzz;
pub mod nonce;
pub mod offload;
pub mod peers;
pub mod probe;
pub mod secure;
pub mod server;
pub mod status;
pub mod time;
pub mod tunnel;
pub mod wire;
