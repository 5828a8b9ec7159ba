//! Readiness for systemd (sd_notify(3); the messages as the `sd-notify` crate writes them):
//! `READY=1` once the packet path runs, `STATUS=` on every state change, `RELOADING=1` and
//! `READY=1` around a reload, `STOPPING=1`, and `WATCHDOG=1` every half of
//! `WATCHDOG_USEC` while every worker is alive. The socket is connected once, at start-up
//! as root, so that it still works after a chroot (`-t`). Without `NOTIFY_SOCKET` every
//! call does nothing.

use std::fmt::Write;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// The daemon's notifier.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<UnixDatagram>,
    /// How often to send `WATCHDOG=1`, when systemd asks for it.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// Connects to `NOTIFY_SOCKET`, if set, and reads `WATCHDOG_USEC`.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            teredo_net::notify_socket::connect(&name)
                .map_err(|e| warn!("NOTIFY_SOCKET {}: {e}", name.to_string_lossy()))
                .ok()
        });
        Self { socket, watchdog: sd_notify::watchdog_enabled().map(|d| d / 2) }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some(s) = &self.socket else { return };
        let mut msg = String::new();
        for st in states {
            let _ = writeln!(msg, "{st}");
        }
        if let Err(e) = s.send(msg.as_bytes()) {
            debug!("sd_notify: {e}");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `RELOADING=1` (with the monotonic time systemd 253 wants beside it).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(t) => self.send(&[NotifyState::Reloading, t]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}
