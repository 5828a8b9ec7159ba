//! The status of a running daemon as `teredo status --json` prints it: one JSON object
//! per daemon, built by the control thread from its workers' [`Snapshot`]s. The keys are
//! a contract (see the README): every role has `role`, `pid`, `uptime_s` and `counters`;
//! a client `state`, `address`, `server`, `mapped`, `nat`, `mtu`, `peers`; a relay
//! `prefix`, `workers`, `peers` (and `health`, added by its control, see
//! `super::relay_health`); a server `addresses`; `peer_list` when asked for.

use std::net::Ipv6Addr;
use std::time::Instant;

use serde_json::{Map, Value, json};
use teredo_proto::status::{Counters, MAX_PEER_LIST, PeerInfo, add_counters};

use super::worker::Snapshot;

/// What the control thread knows of its daemon besides the workers' snapshots.
#[derive(Debug, Clone)]
pub struct Identity {
    /// "client", "relay" or "server".
    pub role: &'static str,
    /// When the daemon started.
    pub started: Instant,
    /// The TUN interface's name (client, relay).
    pub interface: Option<String>,
    /// The configuration file.
    pub config: String,
}

/// The daemon's status object from its workers' snapshots.
pub fn to_json(id: &Identity, snapshots: &[Snapshot], peers: bool) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), json!(id.role));
    o.insert("pid".into(), json!(std::process::id()));
    o.insert("uptime_s".into(), json!(id.started.elapsed().as_secs()));
    o.insert("config".into(), json!(id.config));
    if let Some(i) = &id.interface {
        o.insert("interface".into(), json!(i));
    }
    let mut counters = Counters::new();
    let mut peer_count = 0;
    let mut list: Vec<&PeerInfo> = Vec::new();
    for s in snapshots {
        add_counters(&mut counters, s.counters());
        match s {
            Snapshot::Client(c) => {
                o.insert("state".into(), json!(c.state.word()));
                o.insert("address".into(), json!(c.address.map(|a| a.to_string())));
                o.insert("server".into(), json!(c.server.map(|(p, _)| p.to_string())));
                o.insert("server_secondary".into(), json!(c.server.map(|(_, s)| s.to_string())));
                o.insert("mapped".into(), json!(c.mapped.map(|m| m.to_string())));
                o.insert("nat".into(), json!(c.nat.map_or("unknown", |n| n.word())));
                // RFC 6081: what the extensions found and apply.
                o.insert("port_preserving".into(), json!(c.findings.port_preserving));
                o.insert("upnp".into(), json!(c.findings.upnp.map(|m| m.to_string())));
                o.insert("upnp_single_nat".into(), json!(c.findings.upnp_single_nat()));
                o.insert("nat_extension".into(), json!(c.findings.extension()));
                o.insert("random_ports".into(), json!(c.random_ports));
                o.insert("mtu".into(), json!(c.mtu));
                o.insert("last_interaction_s".into(), json!(c.last_interaction.map(|d| d.as_secs())));
                peer_count += c.peers;
                list.extend(&c.peer_list);
            }
            Snapshot::Relay(r) => {
                let p = r.prefix.to_be_bytes();
                let prefix = Ipv6Addr::from([p[0], p[1], p[2], p[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                o.insert("prefix".into(), json!(format!("{prefix}/32")));
                peer_count += r.peers;
                list.extend(&r.peer_list);
            }
            Snapshot::Server(s) => {
                let (a, b) = s.addresses;
                o.insert("addresses".into(), json!([a.to_string(), b.to_string()]));
            }
        }
    }
    if id.role != "server" {
        o.insert("peers".into(), json!(peer_count));
    }
    if id.role != "client" {
        o.insert("workers".into(), json!(snapshots.len()));
    }
    let mut counters: Map<String, Value> =
        counters.into_iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
    // The process's, not a worker's: calls its seccomp filter denied (teredo_net::sandbox).
    counters.insert("seccomp_denied".into(), json!(teredo_net::sandbox::denied()));
    o.insert("counters".into(), Value::Object(counters));
    if peers {
        let l: Vec<Value> = list.into_iter().take(MAX_PEER_LIST).map(peer_json).collect();
        o.insert("peer_list".into(), Value::Array(l));
    }
    Value::Object(o)
}

fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "address": p.address.to_string(),
        "mapping": p.mapping.map(|m| m.to_string()),
        "trusted": p.trusted,
        "last_seen_s": p.last_seen.map(|d| d.as_secs_f64()),
        "queued_bytes": p.queued_bytes,
    })
}

/// The line systemd shows for the daemon (`STATUS=`), from its status object.
pub fn status_line(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    match v.get("role").and_then(Value::as_str) {
        Some("client") => match v.get("address").and_then(Value::as_str) {
            Some(a) => format!(
                "{} {a} (server {}, mapped {}, NAT {})",
                s("state"),
                s("server"),
                s("mapped"),
                s("nat")
            ),
            None => s("state"),
        },
        Some("relay") => match v.get("health").and_then(|h| h.get("route")).and_then(Value::as_str) {
            Some(route) => format!("relaying {} with {} workers, route {route}", s("prefix"), v["workers"]),
            None => format!("relaying {} with {} workers", s("prefix"), v["workers"]),
        },
        Some("server") => format!("serving {}", v["addresses"]),
        _ => String::new(),
    }
}
