//! The machine side of teredo: everything that touches the kernel, and nothing of Teredo
//! beyond "give these bytes to the core".
//!
//! - [`udp`]: UDP sockets for the Teredo port (SO_REUSEPORT so that one socket per worker
//!   shares a port), and the raw IPv6 socket a server forwards echo tests with;
//! - [`batch`]: batched receive and send (recvmmsg/sendmmsg) with preallocated buffers;
//! - [`packet_tx`]: sending UDP datagrams as whole Ethernet frames on a packet socket,
//!   past the kernel's UDP output path (a server's opt-in fast path);
//! - [`privileges`]: dropping root after set-up: user, groups, capabilities, chroot;
//! - [`sockopt`]: the socket options `socket2` lacks (UDP GRO/GSO, packet sockets);
//! - [`poll`]: waiting on several sockets at once;
//! - [`steer`]: per-peer steering of UDP datagrams (reuseport cBPF) and TUN packets (eBPF)
//!   to the worker that owns the peer (Linux);
//! - [`tun`]: the TUN device (Linux `/dev/net/tun`, multi-queue; BSD and macOS via tun-rs);
//! - [`ifconfig`]: link state, MTU, IPv6 addresses and routes without external programs
//!   (Linux: [`netlink`]);
//! - [`client_if`]: the Teredo client's Miredo-compatible interface `up`/`down`;
//! - [`helper`]: the privileged helper that keeps only CAP_NET_ADMIN and applies the
//!   client's `up`/`down` after the daemon dropped root, directly or through
//!   [`hook`], Miredo's client-hook interface.
//!
//! Linux is the tested platform. The calls used here (recvmmsg/sendmmsg, prctl,
//! capabilities) are Linux-specific and gated with `cfg(target_os = "linux")`.

#![warn(missing_docs)]

#[cfg(target_os = "linux")]
pub mod batch;
pub mod client_if;
pub mod helper;
pub mod hook;
pub mod ifconfig;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
pub mod packet_tx;
pub mod poll;
#[cfg(target_os = "linux")]
pub mod privileges;
#[cfg(target_os = "linux")]
pub mod sockopt;
#[cfg(target_os = "linux")]
pub mod steer;
pub mod tun;
pub mod udp;

/// Whether this is a CI run (`CI=true` or `CI=1`), where tests that need root or network
/// namespaces must fail rather than skip.
#[doc(hidden)]
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}
