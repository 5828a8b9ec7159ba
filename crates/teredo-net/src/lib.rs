//! The machine side of teredo: everything that touches the kernel, and nothing of Teredo
//! beyond "give these bytes to the core".
//!
//! - [`udp`]: UDP sockets for the Teredo port (SO_REUSEPORT so that one socket per worker
//!   shares a port), and the raw IPv6 socket a server forwards echo tests with;
//! - [`batch`]: batched receive and send (recvmmsg/sendmmsg) with preallocated buffers;
//! - [`privileges`]: dropping root after set-up: user, groups, capabilities, chroot;
//! - [`poll`]: waiting on several sockets at once.
//!
//! Linux is the tested platform. The calls used here (recvmmsg/sendmmsg, prctl,
//! capabilities) are Linux-specific and gated with `cfg(target_os = "linux")`.

#![warn(missing_docs)]

#[cfg(target_os = "linux")]
pub mod batch;
pub mod poll;
#[cfg(target_os = "linux")]
pub mod privileges;
pub mod udp;
