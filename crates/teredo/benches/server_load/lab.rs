//! The bench's private lab: two network namespaces joined by a veth pair, the server
//! processes started inside one of them, and readers of the kernel's counters in
//! `/proc`. Everything the bench creates is owned by a guard whose `Drop` removes it:
//! namespaces (after killing whatever still runs inside), processes (by pid), files.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use teredo_lab::proc_stat;

/// Every namespace this bench creates is named `tdb-<pid>-<role>`.
pub(crate) const NS_PREFIX: &str = "tdb-";
/// The veth end in the generator namespace.
pub(crate) const VETH_GEN: &str = "tdb-gen";
/// The veth end in the server namespace.
pub(crate) const VETH_SRV: &str = "tdb-srv";

/// Runs a command, failing with its stderr when it does not succeed.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The absolute path of `program` in PATH (and the usual sbin directories), if any.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A network namespace; deleted on drop, after SIGKILL to every process still inside.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn create(name: String) -> Result<Self, String> {
        run("ip", &["netns", "add", &name])?;
        Ok(Self { name })
    }

    /// Runs `sh -c script` inside the namespace.
    pub(crate) fn sh(&self, script: &str) -> Result<String, String> {
        run("ip", &["netns", "exec", &self.name, "sh", "-c", script])
    }

    /// Loads an nftables ruleset inside the namespace (`nft -f -`).
    pub(crate) fn nft(&self, ruleset: &str) -> Result<(), String> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(ruleset.as_bytes()).map_err(|e| format!("nft: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("nft in {}: {}", self.name, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// `ip -n <ns> ARGS`.
    pub(crate) fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Moves the calling thread into this namespace (setns(2) changes only the caller).
    pub(crate) fn enter_current_thread(&self) -> io::Result<()> {
        let f: OwnedFd = fs::File::open(format!("/run/netns/{}", self.name))?.into();
        // SAFETY: a valid descriptor of a network namespace file.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

fn delete_namespace(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid runs inside
            // a namespace this bench made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = run("ip", &["netns", "del", name]);
}

/// Deletes namespaces `tdb-<pid>-*` left by a bench process that no longer runs (one
/// killed before its guards could run).
pub(crate) fn remove_stale_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"]) else { return };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !teredo_lab::daemon::process_alive(pid) {
            eprintln!("removing namespace {name} left by dead process {pid}");
            delete_namespace(name);
        }
    }
}

/// A temporary directory, removed on drop.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    pub(crate) fn create(name: String) -> Result<Self, String> {
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The two namespaces and the veth pair between them:
///
/// ```text
///   gen: tdb-gen 198.51.100.254/24     <-- veth -->     srv: tdb-srv 192.0.2.1/24, 192.0.2.2/24
///        route 192.0.2.0/24 on-link                          default via 198.51.100.254 on-link
///        forwarding off; nft ingress
///        drops all IPv4 not to .254
/// ```
pub(crate) struct Topology {
    pub(crate) gen_ns: Netns,
    pub(crate) srv_ns: Netns,
    pub(crate) gen_ifindex: u32,
    pub(crate) gen_mac: [u8; 6],
    pub(crate) srv_mac: [u8; 6],
}

impl Topology {
    pub(crate) fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let gen_ns = Netns::create(format!("{NS_PREFIX}{pid}-gen"))?;
        let srv_ns = Netns::create(format!("{NS_PREFIX}{pid}-srv"))?;
        // Created inside the generator namespace, the peer moved straight into the
        // server's: nothing ever appears in the root namespace.
        gen_ns.ip(&[
            "link",
            "add",
            VETH_GEN,
            "type",
            "veth",
            "peer",
            "name",
            VETH_SRV,
            "netns",
            &srv_ns.name,
        ])?;
        for (ns, dev) in [(&gen_ns, VETH_GEN), (&srv_ns, VETH_SRV)] {
            // No IPv6 on the link (no DAD, no router solicitations); no forwarding,
            // so packets for addresses that are not local are dropped without ICMP.
            ns.sh(&format!(
                "echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6 && \
                 echo 0 > /proc/sys/net/ipv4/ip_forward && \
                 echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter && \
                 echo 0 > /proc/sys/net/ipv4/conf/{dev}/rp_filter"
            ))?;
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        gen_ns.ip(&["addr", "add", "198.51.100.254/24", "dev", VETH_GEN])?;
        gen_ns.ip(&["route", "add", "192.0.2.0/24", "dev", VETH_GEN])?;
        srv_ns.ip(&["addr", "add", "192.0.2.1/24", "dev", VETH_SRV])?;
        srv_ns.ip(&["addr", "add", "192.0.2.2/24", "dev", VETH_SRV])?;
        srv_ns.ip(&["route", "add", "default", "via", "198.51.100.254", "dev", VETH_SRV, "onlink"])?;
        // The RAs to the spoofed clients are dropped as soon as the generator's veth
        // receives them. Without forwarding the IP layer would drop them silently too,
        // but only after a route lookup that allocates (and RCU-frees) a route per
        // packet: all on the server's core, since a veth receives on the sender's CPU.
        // They are counted before this point (the veth's rx_packets).
        gen_ns.nft(&format!(
            "table netdev tdb {{\n chain ingress {{\n  type filter hook ingress device \"{VETH_GEN}\" priority 0; policy accept;\n  ip daddr != {} drop\n }}\n}}\n",
            crate::generator::PROBE_ADDR
        ))?;
        let gen_ifindex = gen_ns
            .sh(&format!("cat /sys/class/net/{VETH_GEN}/ifindex"))?
            .trim()
            .parse()
            .map_err(|e| format!("{VETH_GEN} ifindex: {e}"))?;
        let gen_mac = Self::mac(&gen_ns, VETH_GEN)?;
        let srv_mac = Self::mac(&srv_ns, VETH_SRV)?;
        Ok(Self { gen_ns, srv_ns, gen_ifindex, gen_mac, srv_mac })
    }

    /// The MAC address of `dev` in `ns`.
    pub(crate) fn mac(ns: &Netns, dev: &str) -> Result<[u8; 6], String> {
        let out = ns.sh(&format!("cat /sys/class/net/{dev}/address"))?;
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = out.trim().split(':').collect();
        if parts.len() != 6 {
            return Err(format!("{dev}: bad MAC address {out:?}"));
        }
        for (m, p) in mac.iter_mut().zip(parts) {
            *m = u8::from_str_radix(p, 16).map_err(|e| format!("{dev}: MAC {out:?}: {e}"))?;
        }
        Ok(mac)
    }
}

/// A server process; SIGTERM then SIGKILL on drop (and the namespace guard kills
/// anything it forked).
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) name: &'static str,
    pub(crate) log: PathBuf,
}

impl ServerProcess {
    pub(crate) fn spawn(name: &'static str, argv: &[String], log: PathBuf) -> Result<Self, String> {
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        Ok(Self { child, name, log })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process that does the work: the server itself, or for `miredo-server` (a
    /// supervisor that forks one worker even in the foreground) its child.
    pub(crate) fn worker_pid(&mut self) -> Result<u32, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited ({status}): {}", self.name, self.log_tail()));
            }
            let kids = proc_stat::children_of(self.pid());
            if let Some(&k) = kids.first() {
                return Ok(k);
            }
            if Instant::now() > deadline {
                return Ok(self.pid());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    pub(crate) fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status}): {}", self.name, self.log_tail())),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let pid = self.pid() as i32;
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system, all threads) of `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    proc_stat::read(pid).map(|s| s.utime + s.stime)
}

/// Received packets of `dev` as seen by a task in its namespace (`/proc/<tid>/net/dev`).
pub(crate) fn rx_packets(task: u32, dev: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{task}/net/dev")).ok()?;
    s.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        (name.trim() == dev).then(|| rest.split_whitespace().nth(1)?.parse().ok())?
    })
}

/// The `Udp:` counters of the namespace of `pid` (`/proc/<pid>/net/snmp`), by name.
pub(crate) fn udp_counters(pid: u32) -> Vec<(String, u64)> {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/net/snmp")) else { return Vec::new() };
    let udp: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    if udp.len() < 2 {
        return Vec::new();
    }
    udp[0]
        .split_whitespace()
        .skip(1)
        .zip(udp[1].split_whitespace().skip(1))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

pub(crate) fn counter(list: &[(String, u64)], name: &str) -> u64 {
    list.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap_or(0)
}
