//! `teredo status [--json] [--peers]`: the state of every teredo daemon of this network
//! namespace, from their control sockets (`teredo_net::control`). Plain output reads like
//! `netsh interface teredo show state` or `wg show`; `--json` prints an array with one
//! object per daemon (keys in `crate::daemon::status`).

use std::io::{self, Read, Write};
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use teredo_net::control;

use super::{EXIT_FAILURE, EXIT_OK};

/// How long one daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read from one daemon.
const MAX_ANSWER: u64 = 16 << 20;

/// `teredo status` options.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print a JSON array, one object per daemon.
    #[arg(long)]
    pub json: bool,
    /// List each daemon's peers (at most 1000 each).
    #[arg(long)]
    pub peers: bool,
}

/// Asks daemon `pid` for its status object (`request` "status" or "status peers"), or
/// anything else its control socket answers (a relay's "drain").
pub(super) fn ask(pid: u32, request: &str) -> Result<Value, String> {
    let mut s = control::connect(pid).map_err(|e| format!("daemon {pid}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.write_all(format!("{request}\n").as_bytes()).map_err(|e| format!("daemon {pid}: {e}"))?;
    let mut text = String::new();
    s.take(MAX_ANSWER).read_to_string(&mut text).map_err(|e| format!("daemon {pid}: {e}"))?;
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("daemon {pid}: bad answer ({e})"))?;
    match v.get("error").and_then(Value::as_str) {
        Some(e) => Err(format!("daemon {pid}: {e}")),
        None => Ok(v),
    }
}

/// The answers of the daemons of this network namespace: `one(pid)` asks one (`None`
/// leaves it out); each failure is reported on `err` after `who`. `None` (reported too)
/// when no daemon answered, `what` naming the kind looked for ("daemon", "relay").
pub(super) fn ask_all(
    who: &str,
    what: &str,
    err: &mut dyn Write,
    mut one: impl FnMut(u32) -> Option<Result<Value, String>>,
) -> io::Result<Option<Vec<Value>>> {
    let pids = match control::discover() {
        Ok(p) => p,
        Err(e) => {
            writeln!(err, "{who}: cannot list the control sockets: {e}")?;
            return Ok(None);
        }
    };
    let mut found = Vec::new();
    for pid in pids {
        match one(pid) {
            Some(Ok(v)) => found.push(v),
            Some(Err(e)) => writeln!(err, "{who}: {e}")?,
            None => {}
        }
    }
    if found.is_empty() {
        writeln!(err, "{who}: no teredo {what} answered in this network namespace")?;
        return Ok(None);
    }
    Ok(Some(found))
}

/// Runs `teredo status`.
pub(super) fn run(args: &StatusArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let request = if args.peers { "status peers" } else { "status" };
    let Some(found) = ask_all("teredo status", "daemon", err, |pid| Some(ask(pid, request)))? else {
        return Ok(EXIT_FAILURE);
    };
    if args.json {
        writeln!(out, "{}", Value::Array(found))?;
    } else {
        for (i, v) in found.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", plain(v))?;
        }
    }
    Ok(EXIT_OK)
}

/// A JSON value as text: a string without quotes, `absent` for null or no value.
fn text(v: Option<&Value>, absent: &str) -> String {
    match v {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => absent.into(),
        Some(x) => x.to_string(),
    }
}

/// A relay's `health` object in one line: "healthy, route announced (why)".
pub(super) fn health(h: &Value) -> String {
    let mut words = vec![if h["healthy"] == Value::Bool(true) { "healthy" } else { "unhealthy" }];
    if h["drained"] == Value::Bool(true) {
        words.push("drained");
    }
    format!("{}, route {} ({})", words.join(", "), text(h.get("route"), "?"), text(h.get("reason"), "?"))
}

/// One probed server in one line.
fn probe(p: &Value) -> String {
    let rtt = p["rtt_ms"].as_f64().map_or(String::new(), |r| format!(", round trip {r:.1} ms"));
    format!(
        "{} {} (answered {}, unanswered {}, {} missed in a row{rtt})",
        text(p.get("address"), "?"),
        if p["reachable"] == Value::Bool(true) { "reachable" } else { "unreachable" },
        text(p.get("answered"), "0"),
        text(p.get("unanswered"), "0"),
        text(p.get("missed_in_a_row"), "0"),
    )
}

/// One daemon's status as text.
pub(super) fn plain(v: &Value) -> String {
    let s = |k: &str| text(v.get(k), "none");
    let mut t = format!("teredo {} (pid {}, up {} s", s("role"), s("pid"), s("uptime_s"));
    if v.get("interface").is_some() {
        t += &format!(", interface {}", s("interface"));
    }
    t += ")\n";
    let mut field = |name: &str, value: String| t += &format!("  {name:<12}{value}\n");
    match v.get("role").and_then(Value::as_str) {
        Some("client") => {
            field("state:", s("state"));
            field("address:", s("address"));
            field("server:", format!("{} (secondary {})", s("server"), s("server_secondary")));
            field("mapped:", s("mapped"));
            field("NAT:", s("nat"));
            let extension = v.get("nat_extension").and_then(Value::as_str).unwrap_or("none");
            let pp =
                if v.get("port_preserving") == Some(&Value::Bool(true)) { ", port-preserving" } else { "" };
            field("traversal:", format!("{extension} (RFC 6081){pp}, UPnP {}", s("upnp")));
            field("MTU:", s("mtu"));
            field("peers:", s("peers"));
        }
        Some("relay") => {
            field("prefix:", s("prefix"));
            if let Some(h) = v.get("health") {
                field("health:", health(h));
                for p in h["servers"].as_array().into_iter().flatten() {
                    field("probes:", probe(p));
                }
            }
            field("workers:", s("workers"));
            field("peers:", s("peers"));
        }
        Some("server") => {
            let a: Vec<String> = v["addresses"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            field("addresses:", a.join(", "));
            field("workers:", s("workers"));
        }
        _ => {}
    }
    field("config:", s("config"));
    if let Some(c) = v.get("counters").and_then(Value::as_object) {
        let nonzero: Vec<String> = c
            .iter()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(k, n)| format!("{} {n}", k.replace('_', " ")))
            .collect();
        field("counters:", if nonzero.is_empty() { "all zero".into() } else { nonzero.join(", ") });
    }
    if let Some(list) = v.get("peer_list").and_then(Value::as_array) {
        for p in list {
            let g = |k: &str| text(p.get(k), "-");
            let seen = p
                .get("last_seen_s")
                .and_then(Value::as_f64)
                .map_or("never".into(), |x| format!("{x:.1} s ago"));
            t += &format!(
                "\n  peer {}\n    mapping: {}, {}, last seen {seen}, {} bytes queued\n",
                g("address"),
                g("mapping"),
                if p["trusted"] == Value::Bool(true) { "trusted" } else { "not trusted" },
                g("queued_bytes")
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_client() {
        let v = json!({"role": "client", "pid": 7, "uptime_s": 3, "interface": "teredo", "state": "qualified",
            "address": "2001:0:c000:201::1", "server": "192.0.2.1", "server_secondary": "192.0.2.2",
            "mapped": "198.51.100.1:4000", "nat": "cone", "mtu": 1280, "peers": 1, "config": "/etc/miredo.conf",
            "counters": {"sent": 2, "dropped": 0},
            "peer_list": [{"address": "2001:db8::1", "mapping": "192.0.2.9:3544", "trusted": true,
                           "last_seen_s": 0.25, "queued_bytes": 0}]});
        let t = plain(&v);
        assert!(t.starts_with("teredo client (pid 7, up 3 s, interface teredo)\n"), "{t}");
        assert!(t.contains("  state:      qualified\n"), "{t}");
        assert!(t.contains("  traversal:  none (RFC 6081), UPnP none\n"), "{t}");
        assert!(t.contains("  counters:   sent 2\n"), "{t}");
        assert!(
            t.contains("peer 2001:db8::1\n    mapping: 192.0.2.9:3544, trusted, last seen 0.2 s ago"),
            "{t}"
        );
    }

    #[test]
    fn plain_relay_health() {
        let v = json!({"role": "relay", "pid": 8, "uptime_s": 9, "prefix": "2001::/32", "workers": 2, "peers": 0,
            "config": "r.conf", "counters": {},
            "health": {"healthy": false, "route": "withdrawn", "drained": false, "packet_path": true,
                "reason": "no server answers its probes (192.0.2.1 missed 3 in a row)",
                "servers": [{"address": "192.0.2.1", "reachable": false, "answered": 4, "unanswered": 3,
                    "missed_in_a_row": 3, "last_answer_s": 9.5, "rtt_ms": 0.25}]}});
        let t = plain(&v);
        assert!(
            t.contains("  health:     unhealthy, route withdrawn (no server answers its probes (192.0.2.1 missed 3 in a row))\n"),
            "{t}"
        );
        assert!(
            t.contains("  probes:     192.0.2.1 unreachable (answered 4, unanswered 3, 3 missed in a row, round trip 0.2 ms)\n"),
            "{t}"
        );
    }
}
