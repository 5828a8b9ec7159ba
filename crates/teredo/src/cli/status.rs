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

/// Asks daemon `pid` for its status object.
fn ask(pid: u32, peers: bool) -> Result<Value, String> {
    let mut s = control::connect(pid).map_err(|e| format!("daemon {pid}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.write_all(if peers { b"status peers\n" } else { b"status\n" })
        .map_err(|e| format!("daemon {pid}: {e}"))?;
    let mut text = String::new();
    s.take(MAX_ANSWER).read_to_string(&mut text).map_err(|e| format!("daemon {pid}: {e}"))?;
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("daemon {pid}: bad answer ({e})"))?;
    match v.get("error").and_then(Value::as_str) {
        Some(e) => Err(format!("daemon {pid}: {e}")),
        None => Ok(v),
    }
}

/// Runs `teredo status`.
pub(super) fn run(args: &StatusArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let pids = match control::discover() {
        Ok(p) => p,
        Err(e) => {
            writeln!(err, "teredo status: cannot list the control sockets: {e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
    let mut found = Vec::new();
    for pid in pids {
        match ask(pid, args.peers) {
            Ok(v) => found.push(v),
            Err(e) => writeln!(err, "teredo status: {e}")?,
        }
    }
    if found.is_empty() {
        writeln!(err, "teredo status: no teredo daemon answered in this network namespace")?;
        return Ok(EXIT_FAILURE);
    }
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
            field("MTU:", s("mtu"));
            field("peers:", s("peers"));
        }
        Some("relay") => {
            field("prefix:", s("prefix"));
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
        assert!(t.contains("  counters:   sent 2\n"), "{t}");
        assert!(
            t.contains("peer 2001:db8::1\n    mapping: 192.0.2.9:3544, trusted, last seen 0.2 s ago"),
            "{t}"
        );
    }
}
