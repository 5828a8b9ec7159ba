//! The privileged helper of the Teredo client and relay: the one process allowed to
//! reconfigure the TUN interface after the daemon has dropped root, like Miredo's
//! miredo-privproc (miredo-facts §2) but stricter.
//!
//! A relay's helper ([`HelperOptions::route`]) only adds and deletes the relay's route to
//! its served prefix ([`Request::Announce`], [`Request::Withdraw`]), the route it was given
//! at start-up: the daemon withdraws it while unhealthy or drained, so that a routing
//! daemon exporting the kernel route (BIRD, FRR) stops announcing the relay. It keeps no
//! descriptor of the TUN (the interface, and its route, go with the daemon), takes no `Up`
//! or `Down`, and deletes the route when the daemon's end closes. A client's helper
//! refuses `Announce` and `Withdraw`.
//!
//! The daemon, as root and still single-threaded, creates the TUN and calls [`spawn`]. The
//! helper is a forked child that:
//!
//! 1. ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT (it must outlive the worker to clean up)
//!    and closes every inherited descriptor except stdin/stdout/stderr, its socket and the
//!    TUN (kept open, never read, so that the interface still exists for the final `down`
//!    and the hook's `destroy` run);
//! 2. drops to the unprivileged user keeping **only CAP_NET_ADMIN**
//!    ([`crate::privileges::drop_to_net_admin`]): bounding set = {CAP_NET_ADMIN},
//!    permitted = effective = {CAP_NET_ADMIN}, uid/gid = the user's, no-new-privs, not
//!    dumpable. We chose a non-root uid over "uid 0 with only CAP_NET_ADMIN": a uid-0
//!    process without capabilities still owns every root-owned file (/etc, /usr/sbin…),
//!    and any exec of a set-uid-root program would hand back full root; under a normal
//!    uid it owns nothing. In hook mode CAP_NET_ADMIN is also inheritable and ambient, so
//!    the hook script and the `/sbin/ip` it runs keep it across execve (it is the only
//!    right `ip link/addr/route/rule` need), and nothing more;
//! 3. answers [`Reply::Ready`], then serves [`Request`]s read from the socket: an `Up` is
//!    applied only if its address is inside 2001::/32 (not multicast) and its MTU ≥ 1280
//!    ([`validate_up`]); otherwise it is refused, logged, and nothing is touched. A
//!    malformed message is refused and ends the session (the peer is not speaking this
//!    protocol);
//! 4. on end of file (the worker exited or died) runs the final `down` (and, with a hook,
//!    `down` then `destroy`, as Miredo) and exits 0.
//!
//! Without a hook the helper configures the interface itself ([`crate::client_if::ClientInterface`] over
//! netlink). With `ClientHook PATH` it runs that script **instead** ([`crate::hook::HookRunner`]) and
//! returns its exit status in [`Reply::Hook`].
//!
//! The worker side, [`Helper`], sends one request at a time and waits for the reply
//! (Miredo does the same). The process model is Linux-only for now (capabilities); on the
//! BSDs a helper would keep root, as Miredo does without libcap, and is not written yet:
//! there [`spawn`] fails with the same interface.

#[doc(hidden)]
pub mod fuzz;
pub mod message;

pub use message::{Decision, MIN_MTU, Refusal, Reply, Request, decide, validate_up};

#[cfg(target_os = "linux")]
pub use linux::{Helper, HelperError, spawn};
#[cfg(not(target_os = "linux"))]
pub use unsupported::{Helper, HelperError, spawn};

/// How to start the helper.
#[derive(Debug, Clone)]
pub struct HelperOptions {
    /// The unprivileged user it runs as (never root).
    pub user: crate::privileges::User,
    /// Miredo's client hook to run instead of configuring the interface directly.
    pub hook: Option<std::path::PathBuf>,
    /// A relay's helper: the route it adds and deletes on request (see the module
    /// comment). `None` for a client's.
    pub route: Option<crate::ifconfig::Route>,
    /// Whether it enters its seccomp filter (see [`crate::sandbox`]); its Landlock and
    /// resource limits apply either way.
    pub seccomp: bool,
}

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod unsupported;
