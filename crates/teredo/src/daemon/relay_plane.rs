//! The control of a relay (`teredo run`, `RelayType cone`): its health and its route, the
//! operator's `drain` and `undrain`, and reload (where only the log level, the metrics and
//! `MaxPeers` can change: the interface, the prefix, the socket and the table were set up
//! as root).
//!
//! The relay keeps its route to the served prefix only while [`RelayHealth`] says so. The
//! route is added and deleted by the relay's privileged helper (`teredo_net::helper`,
//! which may touch that one route and nothing else); each change is logged with its
//! reason, and `teredo status` shows the health.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value, json};
use teredo_net::helper::{Helper, Reply};
use teredo_proto::probe::Outcome;
use tracing::{info, warn};

use super::control::{Observability, Plane};
use super::relay_health::RelayHealth;
use super::worker::{MAX_WAIT, Snapshot, Workers};
use super::{reload, summary};
use crate::config::{self, ClientRelayConfig, ClientRelayOverrides};

/// A relay's route and who can change it.
pub struct RelayRoute {
    /// The route as words, for the logs ("2001::/32 on teredo").
    pub name: String,
    /// The helper that adds and deletes it; `None` where there is none (the route then
    /// stays as set up at start-up).
    pub helper: Option<Helper>,
    /// Whether the route is there now.
    pub announced: bool,
    /// A change the helper failed to apply, not logged again until it succeeds.
    pub failing: bool,
}

/// A relay's control.
pub struct RelayPlane {
    /// The configuration file.
    pub path: PathBuf,
    /// The configuration in force.
    pub cfg: ClientRelayConfig,
    /// Whether the TUN offloads are on (for the summary).
    pub offloads: bool,
    /// `MaxPeers` at start-up: the allocation a reload may lower it within.
    pub allocated_peers: u32,
    /// The health.
    pub health: RelayHealth,
    /// The route.
    pub route: RelayRoute,
}

impl RelayPlane {
    /// Adds or deletes the route when the health says so.
    fn apply(&mut self) {
        let want = self.health.announce();
        if want == self.route.announced {
            return;
        }
        let now = Instant::now();
        let Some(helper) = self.route.helper.as_mut() else {
            if !self.route.failing {
                warn!("{}: cannot be changed here (no helper): {}", self.route.name, self.health.reason(now));
                self.route.failing = true;
            }
            return;
        };
        let done = if want { helper.announce() } else { helper.withdraw() };
        match done {
            Ok(Reply::Applied) => {
                self.route.announced = want;
                self.route.failing = false;
                if want {
                    info!("{} announced: {}", self.route.name, self.health.reason(now));
                } else {
                    warn!("{} withdrawn: {}", self.route.name, self.health.reason(now));
                }
            }
            other => {
                if !self.route.failing {
                    warn!("{}: the helper did not apply the change: {other:?}", self.route.name);
                    self.route.failing = true;
                }
            }
        }
    }

    /// `drain` (true) or `undrain` (false).
    fn drain(&mut self, drained: bool) -> Value {
        if drained != self.health.drained() {
            info!("{}", if drained { "drained by the operator" } else { "undrained by the operator" });
        }
        self.health.set_drained(drained);
        self.apply();
        let mut o = Map::new();
        self.status(&mut o);
        let mut answer = json!({"drained": drained});
        if let (Value::Object(a), Some(h)) = (&mut answer, o.remove("health")) {
            a.insert("health".into(), h);
        }
        answer
    }
}

impl Plane for RelayPlane {
    fn probe(&mut self, server: Ipv4Addr, outcome: Outcome) {
        self.health.probe(server, outcome, Instant::now());
        self.apply();
    }

    fn tick(&mut self, workers: &mut Workers) {
        self.health.set_packet_path(workers.alive(MAX_WAIT * 4));
        self.apply();
    }

    fn status(&self, object: &mut Map<String, Value>) {
        object.insert("health".into(), self.health.to_json(self.route.announced, Instant::now()));
    }

    fn request(&mut self, request: &str) -> Option<Value> {
        match request {
            "drain" => Some(self.drain(true)),
            "undrain" => Some(self.drain(false)),
            _ => None,
        }
    }

    fn reload(&mut self, workers: &Workers) -> Option<Observability> {
        let overrides = ClientRelayOverrides::default();
        let new = reload::read(&self.path, |p| config::load_client_relay(p, &overrides))?;
        let new = reload::client_relay(&self.path, &self.cfg, new, self.allocated_peers);
        if new.max_peers != self.cfg.max_peers {
            info!("MaxPeers is now {}", new.max_peers);
            workers.set_max_peers(new.max_peers as usize);
        }
        self.cfg = new;
        Some(reload::client_relay_observability(&self.cfg))
    }

    fn summary(&self, last: &[Snapshot]) -> String {
        summary::tunnel_line(last, self.offloads)
    }
}
