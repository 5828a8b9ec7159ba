//! Prometheus metrics (`MetricsAddress ADDR:PORT`): `GET /metrics` in the text exposition
//! format 0.0.4, encoded by the `prometheus` crate from the same status object as
//! `teredo status --json`. Names are `teredo_*`; every counter of the daemon is
//! `teredo_<name>_total`; gauges are `teredo_peers`, `teredo_workers`, `teredo_mtu`,
//! `teredo_uptime_seconds`, `teredo_qualified` (a client: 1 while qualified); and
//! `teredo_daemon_info{role,state,address,nat}` carries the labels.
//!
//! The HTTP side is deliberately small: one request per connection, read with a short
//! timeout and a bounded size, answered and closed, on the control thread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use serde_json::Value;

/// The most a request head may be.
const MAX_REQUEST: usize = 4096;
/// How long a scraper may take to send its request, and to read the answer.
const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// The text exposition of a daemon's status object.
pub fn encode_status(v: &Value) -> String {
    let r = Registry::new();
    if let Some(counters) = v.get("counters").and_then(Value::as_object) {
        for (name, value) in counters {
            let help = format!("teredo counter: {}", name.replace('_', " "));
            if let Ok(c) = IntCounter::with_opts(Opts::new(format!("teredo_{name}_total"), help)) {
                c.inc_by(value.as_u64().unwrap_or(0));
                let _ = r.register(Box::new(c));
            }
        }
    }
    let gauge = |name: &str, help: &str, value: Option<i64>| {
        if let Some(n) = value
            && let Ok(g) = IntGauge::new(format!("teredo_{name}"), help)
        {
            g.set(n);
            let _ = r.register(Box::new(g));
        }
    };
    gauge("peers", "entries in the list of peers", v.get("peers").and_then(Value::as_i64));
    gauge("workers", "packet threads", v.get("workers").and_then(Value::as_i64));
    gauge("mtu", "the MTU the server advertised", v.get("mtu").and_then(Value::as_i64));
    gauge("uptime_seconds", "time since the daemon started", v.get("uptime_s").and_then(Value::as_i64));
    if let Some(h) = v.get("health") {
        let flag = |k: &str| h.get(k).and_then(Value::as_bool).map(i64::from);
        gauge("relay_healthy", "1 while the relay is healthy (packet path, probed servers)", flag("healthy"));
        gauge("relay_drained", "1 while the relay is drained by the operator", flag("drained"));
        let announced = h.get("route").and_then(Value::as_str).map(|r| i64::from(r == "announced"));
        gauge("relay_route_announced", "1 while the relay's route to its prefix is in the kernel", announced);
    }
    let label = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    if v.get("role").and_then(Value::as_str) == Some("client") {
        gauge("qualified", "1 while the client is qualified", Some(i64::from(label("state") == "qualified")));
    }
    let names = ["role", "state", "address", "nat"];
    if let Ok(info) =
        IntGaugeVec::new(Opts::new("teredo_daemon_info", "what the daemon is (always 1)"), &names)
    {
        let values: Vec<String> = names.iter().map(|n| label(n)).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        info.with_label_values(&values).set(1);
        let _ = r.register(Box::new(info));
    }
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&r.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The metrics listener.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    /// Where it listens.
    pub address: SocketAddr,
}

impl Endpoint {
    /// Listens on `address` (non-blocking).
    pub fn bind(address: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        Ok(Self { listener, address })
    }

    /// The listener, to poll.
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Takes one waiting connection, if any.
    pub fn accept(&self) -> Option<TcpStream> {
        self.listener.accept().ok().map(|(s, _)| s)
    }
}

/// Reads one request from `s`; true when it is `GET /metrics`. Anything else is answered
/// here (404, 405 or 400) and false returned.
pub fn read_request(s: &mut TcpStream) -> bool {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = [0u8; MAX_REQUEST];
    let mut n = 0;
    while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && !buf[..n].ends_with(b"\n\n") {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    let mut words = line.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let status = match (method, path) {
        ("GET", "/metrics") => return true,
        ("GET" | "HEAD", _) => "404 Not Found",
        ("", _) => "400 Bad Request",
        _ => "405 Method Not Allowed",
    };
    respond(s, status, "text/plain; charset=utf-8", &format!("{status}\n"));
    false
}

/// Writes an HTTP/1.1 answer and closes.
pub fn respond(s: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body.as_bytes()));
}

/// The content type of [`encode_status`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn counters_and_gauges() {
        let v = json!({"role": "client", "state": "qualified", "address": "2001::1", "nat": "cone",
                       "peers": 3, "mtu": 1280, "uptime_s": 9, "counters": {"sent": 7, "dropped_malformed": 0}});
        let t = encode_status(&v);
        assert!(t.contains("# TYPE teredo_sent_total counter\n"), "{t}");
        assert!(t.contains("teredo_sent_total 7\n"), "{t}");
        assert!(t.contains("teredo_dropped_malformed_total 0\n"), "{t}");
        assert!(t.contains("teredo_peers 3\n"), "{t}");
        assert!(t.contains("teredo_qualified 1\n"), "{t}");
        assert!(
            t.contains(
                "teredo_daemon_info{address=\"2001::1\",nat=\"cone\",role=\"client\",state=\"qualified\"} 1"
            ),
            "{t}"
        );
    }
}
