//! A client's configuration (RFC 4380 §5.2: "the IPv4 address of a server" and "a
//! secondary IPv4 address of that server"; the timers of §5.2.1 and §5.2.5, configurable
//! per RFC 6081 §5.1.1) with Miredo's defaults.

use std::net::Ipv4Addr;
use std::time::Duration;

/// The default refresh interval: 30 s (RFC 4380 §5.2; RFC 6081 §5.1.1 "the default MUST
/// be 30 seconds").
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The default time to wait for an RA before sending the RS again: T = 4 s (RFC 4380
/// §5.2.1, after RFC 4861).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(4);
/// The default number of RSs sent before the server is deemed unreachable: N = 3
/// (RFC 4380 §5.2.1).
pub const DEFAULT_TRIES: u8 = 3;
/// The default wait after the server was found unreachable, counted from the last RS
/// (Miredo's restart delay; RFC 4380 leaves it open).
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(100);
/// The longest [`Config::upnp_wait`] the client accepts: RFC 6081 §5.3.3 puts the UPnP
/// mapping before qualification, and a network without an IGD must not hold it longer.
pub const MAX_UPNP_WAIT: Duration = Duration::from_secs(2);
/// The shortest delay the client accepts for any of its timers; shorter ones are raised
/// to it, so that no configuration makes it spin.
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// Where the server's primary address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAddress {
    /// A literal IPv4 address from the configuration.
    Ipv4(Ipv4Addr),
    /// A host name that the I/O layer resolves when the client emits
    /// [`Event::ResolveServer`](super::Event::ResolveServer), answering with [`Client::set_server`](super::Client::set_server) or
    /// [`Client::resolution_failed`](super::Client::resolution_failed). It is resolved again before each new start, after
    /// the server was found unreachable.
    HostName,
}

/// The client's configuration (RFC 4380 §5.2: "the IPv4 address of a server" and "a
/// secondary IPv4 address of that server"; the timers of §5.2.1 and §5.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The server's primary address.
    pub server: ServerAddress,
    /// The server's secondary address; `None` for the primary address plus one, the
    /// convention of Miredo's and Windows' servers.
    pub secondary: Option<Ipv4Addr>,
    /// The Teredo refresh interval: the time from one RS to the next once qualified
    /// (RFC 4380 §5.2.5; configurable per RFC 6081 §5.1.1).
    pub refresh_interval: Duration,
    /// How long to wait for an RA before sending the RS again (T of RFC 4380 §5.2.1).
    pub reply_timeout: Duration,
    /// How many RSs in a row may go unanswered before the server is unreachable (N of
    /// RFC 4380 §5.2.1).
    pub tries: u8,
    /// How long to wait, after the last unanswered RS, before starting over.
    pub restart_delay: Duration,
    /// The Teredo service port (the client socket's local port), for the port-preserving
    /// test of RFC 6081 §5.4.3; 0 when unknown (then the NAT is never deemed
    /// port-preserving).
    pub local_port: u16,
    /// How long the first RS waits for the UPnP mapping of RFC 6081 §5.3.3
    /// ([`Client::set_upnp`](super::Client::set_upnp)), at most [`MAX_UPNP_WAIT`]; zero
    /// when UPnP is off.
    pub upnp_wait: Duration,
}

impl Config {
    /// The configuration for `server` with every default: secondary address primary + 1,
    /// refresh every 30 s, 4 s reply timeout, 3 tries, 100 s restart delay, no local port
    /// known, no UPnP.
    pub fn new(server: ServerAddress) -> Self {
        Self {
            server,
            secondary: None,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            tries: DEFAULT_TRIES,
            restart_delay: DEFAULT_RESTART_DELAY,
            local_port: 0,
            upnp_wait: Duration::ZERO,
        }
    }

    /// The same configuration with every delay at least [`MIN_DELAY`] and at least one try.
    pub(super) fn sanitised(mut self) -> Self {
        self.refresh_interval = self.refresh_interval.max(MIN_DELAY);
        self.reply_timeout = self.reply_timeout.max(MIN_DELAY);
        self.restart_delay = self.restart_delay.max(MIN_DELAY);
        self.tries = self.tries.max(1);
        self.upnp_wait = self.upnp_wait.min(MAX_UPNP_WAIT);
        self
    }
}

/// A server address that cannot be used: it is not global unicast (RFC 4380 §5.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Teredo server address {0} is not a global unicast IPv4 address (RFC 4380 §5.2.4)")]
pub struct ServerNotGlobal(pub Ipv4Addr);
