//! [`Node`]: one namespace of a lab (server, relay, NAT, client, ...), and what a test does
//! with it: run a command inside, spawn a daemon, read interface addresses, find the
//! Teredo address, ping.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use teredo_proto::address::{TEREDO_PREFIX, TeredoAddress};

use crate::cmd::{self, in_ns, on_host};
use crate::daemon::Daemon;
use crate::error::{LabError, Result};
use crate::wait::{wait_for, wait_until};

/// A network namespace of a lab. Cheap to clone: it holds names, not resources (the
/// [`Lab`](crate::Lab) owns the namespace and deletes it).
#[derive(Debug, Clone)]
pub struct Node {
    ns: String,
    role: String,
    artifacts: Arc<PathBuf>,
}

impl Node {
    pub(crate) fn new(ns: String, role: String, artifacts: Arc<PathBuf>) -> Self {
        Self { ns, role, artifacts }
    }

    /// The namespace name (for `ip netns exec`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The node's role in the lab, e.g. `server`, `nat1`, `c2`.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// A `Command` that runs `program` inside this namespace; add arguments and run it.
    pub fn command(&self, program: &str) -> Command {
        in_ns(&self.ns, program)
    }

    /// Runs `program args` inside the namespace and returns its stdout; a non-zero exit
    /// is an error with the command, namespace and stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        cmd::checked(self.command(program).args(args), &self.ns)
    }

    /// Runs `program args` inside the namespace and returns its output whatever the exit
    /// status (only a failure to start is an error).
    pub fn exec_output(&self, program: &str, args: &[&str]) -> Result<Output> {
        cmd::output(self.command(program).args(args), &self.ns)
    }

    /// Runs `ip -n NS args` (no process enters the namespace; faster than `exec`).
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        cmd::checked(on_host("ip").arg("-n").arg(&self.ns).args(args), &self.ns)
    }

    /// Sets sysctls inside the namespace, e.g. `("net.ipv4.ip_forward", "1")`.
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> Result<()> {
        let args: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut c = self.command("sysctl");
        c.args(["-q", "-w"]).args(&args);
        cmd::checked(&mut c, &self.ns).map(drop)
    }

    /// Starts `program args` inside the namespace as a [`Daemon`] whose stdout and
    /// stderr go to `<artifacts>/<role>-<name>.log`.
    pub fn spawn(&self, name: &str, program: &str, args: &[&str]) -> Result<Daemon> {
        self.spawn_env(name, program, args, &[])
    }

    /// Like [`Node::spawn`], with extra environment variables (e.g. `RUST_LOG`).
    pub fn spawn_env(
        &self,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let log = self.unique_artifact(name, "log");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Daemon::spawn_env(&format!("{}/{name}", self.role), &self.ns, program, &args, env, log)
    }

    /// Starts `program args` on the host as a [`Daemon`] (see [`Daemon::spawn_on_host`]) for
    /// a program that joins this namespace by itself, logging as [`Node::spawn`] does.
    pub fn spawn_joining(&self, name: &str, program: &str, args: &[&str]) -> Result<Daemon> {
        let log = self.unique_artifact(name, "log");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Daemon::spawn_on_host(&format!("{}/{name}", self.role), &self.ns, program, &args, log)
    }

    /// The lab's artifacts directory (logs, configs, captures).
    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts
    }

    /// `<artifacts>/<role>-<file>`: where this node keeps a file of its own.
    pub fn artifact_path(&self, file: &str) -> PathBuf {
        self.artifacts.join(format!("{}-{file}", self.role))
    }

    /// `<artifacts>/<role>-<stem>.<ext>`, or `<role>-<stem>-N.<ext>` if that exists.
    pub(crate) fn unique_artifact(&self, stem: &str, ext: &str) -> PathBuf {
        let first = self.artifact_path(&format!("{stem}.{ext}"));
        if !first.exists() {
            return first;
        }
        (2..1000)
            .map(|n| self.artifact_path(&format!("{stem}-{n}.{ext}")))
            .find(|p| !p.exists())
            .unwrap_or(first)
    }

    /// Writes `contents` to [`artifact_path(file)`](Self::artifact_path) and returns the path.
    pub fn write_artifact(&self, file: &str, contents: &str) -> Result<PathBuf> {
        let path = self.artifact_path(file);
        std::fs::write(&path, contents)
            .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// Whether interface `iface` exists in the namespace.
    pub fn has_link(&self, iface: &str) -> bool {
        self.ip(&["link", "show", "dev", iface]).is_ok()
    }

    /// Sets interface `iface` up or down.
    pub fn link_set(&self, iface: &str, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.ip(&["link", "set", "dev", iface, state]).map(drop)
    }

    /// All addresses on `iface` (`ip -j addr show dev IFACE`), any scope.
    pub fn addrs(&self, iface: &str) -> Result<Vec<IpAddr>> {
        let out = self.ip(&["-j", "addr", "show", "dev", iface])?;
        parse_ip_addr_json(&out).map_err(|e| {
            LabError::Invalid(format!("cannot parse `ip -j addr show dev {iface}` in {}: {e}", self.ns))
        })
    }

    /// The IPv6 addresses on `iface`.
    pub fn ipv6_addrs(&self, iface: &str) -> Result<Vec<Ipv6Addr>> {
        Ok(self
            .addrs(iface)?
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .collect())
    }

    /// The IPv4 addresses on `iface`.
    pub fn ipv4_addrs(&self, iface: &str) -> Result<Vec<Ipv4Addr>> {
        Ok(self
            .addrs(iface)?
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// The first address under the Teredo prefix 2001::/32 on `iface`, decoded; `None` if
    /// there is none (or the interface does not exist yet).
    pub fn teredo_address(&self, iface: &str) -> Result<Option<(Ipv6Addr, TeredoAddress)>> {
        if !self.has_link(iface) {
            return Ok(None);
        }
        Ok(self
            .ipv6_addrs(iface)?
            .into_iter()
            .find_map(|a| TeredoAddress::from_ipv6_with_prefix(&a, TEREDO_PREFIX).map(|t| (a, t))))
    }

    /// Waits until `iface` carries a Teredo address, at most `timeout`.
    pub fn wait_teredo_address(&self, iface: &str, timeout: Duration) -> Result<(Ipv6Addr, TeredoAddress)> {
        wait_until(&format!("a Teredo address on {iface} in {}", self.ns), timeout, || {
            self.teredo_address(iface)
        })
    }

    /// Sends `count` ICMPv6 echo requests to `to` (`ping -6`, 0.2 s apart, 2 s reply
    /// wait) and says whether at least one reply came back.
    pub fn ping6(&self, to: Ipv6Addr, count: u32) -> bool {
        self.ping("-6", &to.to_string(), count)
    }

    /// Sends `count` ICMP echo requests to `to` and says whether a reply came back.
    pub fn ping4(&self, to: Ipv4Addr, count: u32) -> bool {
        self.ping("-4", &to.to_string(), count)
    }

    fn ping(&self, family: &str, to: &str, count: u32) -> bool {
        let count = count.max(1).to_string();
        self.exec_output("ping", &[family, "-n", "-q", "-c", &count, "-i", "0.2", "-W", "2", to])
            .is_ok_and(|o| o.status.success())
    }

    /// Pings `to` once at a time until a reply comes back, at most `timeout`.
    pub fn wait_ping6(&self, to: Ipv6Addr, timeout: Duration) -> Result<()> {
        wait_for(&format!("an ICMPv6 echo reply from {to} to {}", self.ns), timeout, || {
            let o = self.exec_output("ping", &["-6", "-n", "-q", "-c", "1", "-W", "1", &to.to_string()]);
            o.is_ok_and(|o| o.status.success())
        })
    }

    /// Runs `f` on a fresh thread that has entered this namespace (`setns`), and returns
    /// its result. Sockets made there stay in the namespace and can be used from any
    /// thread afterwards.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.ns);
        let file = std::fs::File::open(&path).map_err(|e| LabError::io(format!("opening {path}"), e))?;
        let joined = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns(2) with a valid namespace descriptor only changes this
                // (fresh, scoped) thread's network namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(LabError::io(format!("setns into {path}"), std::io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join()
        });
        match joined {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_bind(&self, addr: SocketAddr) -> Result<UdpSocket> {
        self.enter(|| UdpSocket::bind(addr))?
            .map_err(|e| LabError::io(format!("binding UDP {addr} in {}", self.ns), e))
    }

    /// The processes running in this namespace.
    pub fn pids(&self) -> Result<Vec<u32>> {
        crate::netns::pids(&self.ns)
    }
}

/// Sends `count` ICMPv6 echo requests from `from` to `to`; true if a reply came back.
pub fn ping6(from: &Node, to: Ipv6Addr, count: u32) -> bool {
    from.ping6(to, count)
}

/// Addresses from the JSON of `ip -j addr show`.
fn parse_ip_addr_json(text: &str) -> Result<Vec<IpAddr>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for link in v.as_array().ok_or("not a JSON array")? {
        let Some(infos) = link.get("addr_info").and_then(|a| a.as_array()) else {
            continue;
        };
        for info in infos {
            if let Some(local) = info.get("local").and_then(|l| l.as_str()) {
                out.push(local.parse().map_err(|e| format!("bad address {local}: {e}"))?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let j = r#"[{"ifindex":2,"ifname":"teredo","addr_info":[
            {"family":"inet6","local":"fe80::ffff:ffff:ffff","prefixlen":64,"scope":"link"},
            {"family":"inet6","local":"2001:0:c000:201:1234:5678:9abc:def0","prefixlen":32},
            {"family":"inet","local":"10.0.1.2","prefixlen":24}]}]"#;
        let a = parse_ip_addr_json(j).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[2], IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)));
        assert!(parse_ip_addr_json("nope").is_err());
    }
}
