//! The machine side of teredo: everything that touches the kernel, and nothing of Teredo
//! beyond "give these bytes to the core".
//!
//! - [`udp`]: UDP sockets for the Teredo port (SO_REUSEPORT so that one socket per worker
//!   shares a port), and the raw IPv6 socket a server forwards echo tests with;
//! - [`batch`]: batched receive and send (recvmmsg/sendmmsg on Linux, a portable
//!   recvfrom/sendto fallback elsewhere) with preallocated buffers;
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
//! - [`control`]: the daemons' control socket (abstract, per network namespace, on Linux);
//! - [`signals`]: the daemon's signals, taken synchronously by one thread;
//! - [`detach`]: detaching from the terminal as Miredo does;
//! - [`notify_socket`]: the service manager's notification socket, connected once;
//! - [`pidfile`]: the locked PID file;
//! - [`syslog`]: syslog(3) for a detached daemon;
//! - [`waker`]: waking a thread that sleeps in poll(2).
//!
//! Linux is the tested platform. Every module the `teredo` command uses has the same
//! interface on every platform; what is Linux-only (recvmmsg/sendmmsg, prctl,
//! capabilities, AF_PACKET, the helper's process model, BPF steering) is chosen here with
//! `cfg(target_os = "linux")`, with a fallback or an `Unsupported` answer elsewhere. The
//! BSD paths cannot be compiled on this machine (no other Rust target is installed).

#![warn(missing_docs)]

pub mod batch;
pub mod client_if;
pub mod control;
pub mod detach;
pub mod helper;
pub mod hook;
pub mod ifconfig;
#[cfg(target_os = "linux")]
pub mod netlink;
pub mod notify_socket;
#[cfg(target_os = "linux")]
pub mod packet_tx;
#[cfg(not(target_os = "linux"))]
#[path = "packet_tx/unsupported.rs"]
pub mod packet_tx;
pub mod pidfile;
pub mod poll;
pub mod privileges;
pub mod sandbox;
pub mod signals;
#[cfg(target_os = "linux")]
pub mod sockopt;
#[cfg(target_os = "linux")]
pub mod steer;
pub mod syslog;
pub mod tun;
pub mod udp;
pub mod waker;

/// Whether this is a CI run (`CI=true` or `CI=1`), where tests that need root or network
/// namespaces must fail rather than skip.
#[doc(hidden)]
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Attaches the programs that bring each peer's datagrams (to the SO_REUSEPORT group of
/// `udp`) and the TUN's packets for it (to the queues of `tun`) to the same one of
/// `workers` workers ([`steer`], Linux, as root). Elsewhere an error: one worker runs.
pub fn steer_workers(
    tun: &tun::Tun,
    udp: &socket2::Socket,
    workers: u32,
    prefix: u32,
    key: u64,
) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        steer::steer_udp(udp, workers, prefix, key).map_err(|e| e.to_string())?;
        steer::steer_tun(tun, workers, prefix, key).map_err(|e| e.to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (tun, udp, workers, prefix, key);
        Err("one worker only on this platform".into())
    }
}
