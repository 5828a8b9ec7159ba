//! Root tests of the platform layer on Linux, each in a network namespace of its own that
//! is connected to nothing: the TUN device, the Miredo-compatible interface `up`/`down`
//! over netlink (checked with `ip -j`), the privileged helper end to end (validation,
//! capabilities, final `down` on end of file) and the client-hook variant (exact Miredo
//! environment). Without root they print SKIP, or fail under CI=true.

mod common;

use std::net::Ipv6Addr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{addresses, in_new_netns, is_up, link, proc_status, routes};
use teredo_net::client_if::ClientInterface;
use teredo_net::helper::{self, HelperOptions, Refusal, Reply};
use teredo_net::netlink::Netlink;
use teredo_net::privileges::lookup_user;
use teredo_net::tun::{Tun, TunError, TunOptions};

const A: &str = "2001:0:c000:201:1234:63bf:3fff:fdd2";
const B: &str = "2001:0:c000:201:0:63bf:3fff:fdd3";

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn tun(name: &str) -> Result<Tun, String> {
    Tun::create(&TunOptions { name: Some(name.into()), ..Default::default() }).map_err(|e| e.to_string())
}

fn up_state(dev: &str, address: &str) -> Vec<String> {
    let _ = dev;
    let mut v = vec!["fe80::ffff:ffff:ffff/64".to_owned(), format!("{address}/32")];
    v.sort();
    v
}

#[test]
fn client_interface_up_change_down() {
    in_new_netns("client_interface_up_change_down", || {
        let t = tun("teredo0")?;
        ensure!(t.name() == "teredo0", "name {}", t.name());
        ensure!(t.ifindex() == teredo_net::tun::index_of("teredo0").map_err(|e| e.to_string())?, "ifindex");
        let nl = Netlink::open().map_err(|e| e.to_string())?;
        let mut iface = ClientInterface::new(nl, t.ifindex());

        iface.up(addr(A), 1400).map_err(|e| e.to_string())?;
        let (mtu, flags) = link("teredo0")?;
        ensure!(mtu == 1400, "mtu {mtu}");
        ensure!(flags.iter().any(|f| f == "UP"), "flags {flags:?}");
        ensure!(addresses("teredo0")? == up_state("teredo0", A), "addresses {:?}", addresses("teredo0")?);
        let r = routes("teredo0")?;
        ensure!(r.contains(&"default metric 1029".to_owned()), "routes {r:?}");
        ensure!(r.contains(&"2001::/32 metric 256".to_owned()), "on-link Teredo prefix missing: {r:?}");

        // Idempotent.
        iface.up(addr(A), 1400).map_err(|e| e.to_string())?;
        ensure!(addresses("teredo0")? == up_state("teredo0", A), "after repeat {:?}", addresses("teredo0")?);

        // A new address replaces the old one.
        iface.up(addr(B), 1280).map_err(|e| e.to_string())?;
        ensure!(addresses("teredo0")? == up_state("teredo0", B), "after change {:?}", addresses("teredo0")?);
        ensure!(link("teredo0")?.0 == 1280, "mtu after change");
        ensure!(routes("teredo0")?.contains(&"default metric 1029".to_owned()), "route after change");

        iface.down().map_err(|e| e.to_string())?;
        ensure!(addresses("teredo0")?.is_empty(), "after down {:?}", addresses("teredo0")?);
        ensure!(!is_up("teredo0")?, "still up");
        ensure!(routes("teredo0")?.is_empty(), "routes after down {:?}", routes("teredo0")?);
        iface.down().map_err(|e| e.to_string())?;

        // Up again after down.
        iface.up(addr(A), 1400).map_err(|e| e.to_string())?;
        ensure!(addresses("teredo0")? == up_state("teredo0", A), "up after down {:?}", addresses("teredo0")?);
        Ok(())
    });
}

fn checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMPv6 echo request from `src` to `dst`.
fn echo_request(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"teredo-net");
    let c = checksum(src, dst, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

#[test]
fn tun_carries_packets_both_ways() {
    // The kernel of the test's own namespace answers an echo request written into the
    // TUN; the reply comes back out of the TUN. Nothing leaves the namespace.
    in_new_netns("tun_carries_packets_both_ways", || {
        let t = tun("teredo0")?;
        let mut iface = ClientInterface::new(Netlink::open().map_err(|e| e.to_string())?, t.ifindex());
        iface.up(addr(A), 1400).map_err(|e| e.to_string())?;
        t.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2048];
        // Drain what the kernel sent on link-up (router solicitation, MLD).
        while t.recv(&mut buf).is_ok() {}
        let peer = addr("2001:0:c000:201:0:63bf:3fff:1");
        let req = echo_request(peer, addr(A));
        ensure!(t.send(&req).map_err(|e| e.to_string())? == req.len(), "short write");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let ready = teredo_net::poll::readable(&[t.as_fd()], Duration::from_millis(200))
                .map_err(|e| e.to_string())?;
            if !ready[0] {
                // The address may still have been tentative (the kernel clears that flag
                // from a work queue, even with IFA_F_NODAD): ask again.
                t.send(&req).map_err(|e| e.to_string())?;
                continue;
            }
            let n = match t.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.to_string()),
            };
            let p = &buf[..n];
            seen.push(format!("{n}:{:?}", p.get(40)));
            if n >= 48 && p[0] >> 4 == 6 && p[6] == 58 && p[40] == 129 {
                ensure!(p[8..24] == addr(A).octets(), "reply source");
                ensure!(p[24..40] == peer.octets(), "reply destination");
                return Ok(());
            }
        }
        Err(format!(
            "no echo reply came out of the TUN; saw {seen:?}; {:?} {:?}",
            addresses("teredo0"),
            routes("teredo0")
        ))
    });
}

#[test]
fn multi_queue() {
    in_new_netns("multi_queue", || {
        let single = tun("single0")?;
        ensure!(matches!(single.clone_queue(), Err(TunError::Unsupported(_))), "clone of single queue");
        let t = Tun::create(&TunOptions { name: None, multi_queue: true, ..Default::default() })
            .map_err(|e| e.to_string())?;
        ensure!(t.name().starts_with("tun"), "kernel-chosen name {}", t.name());
        let q = t.clone_queue().map_err(|e| e.to_string())?;
        ensure!(q.ifindex() == t.ifindex() && q.name() == t.name(), "clone is another device");
        let v = common::ip_json(&["-d", "link", "show", "dev", t.name()])?;
        ensure!(v[0]["num_tx_queues"].as_u64().unwrap_or(0) >= 1, "{v}");
        ensure!(v[0]["linkinfo"]["info_data"]["multi_queue"] == true, "not multi-queue: {v}");
        ensure!(v[0]["linkinfo"]["info_data"]["numqueues"] == 2, "not 2 queues: {v}");
        Ok(())
    });
}

fn nobody() -> teredo_net::privileges::User {
    lookup_user("nobody").expect("user nobody")
}

#[test]
fn helper_applies_only_valid_requests_and_keeps_only_net_admin() {
    in_new_netns("helper_applies_only_valid_requests_and_keeps_only_net_admin", || {
        let t = tun("teredo0")?;
        let user = nobody();
        let mut h = helper::spawn(&t, &HelperOptions { user: user.clone(), hook: None })
            .map_err(|e| e.to_string())?;
        let pid = h.pid();
        for f in ["CapEff", "CapPrm", "CapBnd"] {
            let v = proc_status(pid, f)?;
            ensure!(v == "0000000000001000", "{f} = {v}");
        }
        for f in ["CapInh", "CapAmb"] {
            let v = proc_status(pid, f)?;
            ensure!(v == "0000000000000000", "{f} = {v}");
        }
        ensure!(proc_status(pid, "NoNewPrivs")? == "1", "NoNewPrivs");
        let uid = proc_status(pid, "Uid")?;
        ensure!(uid.split_whitespace().all(|u| u == user.uid.to_string()), "Uid {uid}");
        let gid = proc_status(pid, "Gid")?;
        ensure!(gid.split_whitespace().all(|g| g == user.gid.to_string()), "Gid {gid}");

        let r = h.up(addr(A), 1400).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Applied, "up: {r:?}");
        ensure!(addresses("teredo0")? == up_state("teredo0", A), "addresses {:?}", addresses("teredo0")?);
        ensure!(routes("teredo0")?.contains(&"default metric 1029".to_owned()), "route");

        let r = h.up(addr("2001:db8::1"), 1400).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Refused(Refusal::NotTeredo), "2001:db8::1: {r:?}");
        let r = h.up(addr(B), 1000).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Refused(Refusal::MtuTooSmall), "MTU 1000: {r:?}");
        let r = h.up(addr(B), 1279).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Refused(Refusal::MtuTooSmall), "MTU 1279: {r:?}");
        let r = h.up(addr("ff02::1"), 1400).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Refused(Refusal::Multicast), "ff02::1: {r:?}");
        ensure!(
            addresses("teredo0")? == up_state("teredo0", A),
            "refused requests changed {:?}",
            addresses("teredo0")?
        );
        ensure!(link("teredo0")?.0 == 1400, "refused MTU applied");

        let r = h.up(addr(B), 1280).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Applied, "up B: {r:?}");
        ensure!(
            addresses("teredo0")? == up_state("teredo0", B),
            "old address left {:?}",
            addresses("teredo0")?
        );

        let r = h.down().map_err(|e| e.to_string())?;
        ensure!(r == Reply::Applied, "down: {r:?}");
        ensure!(addresses("teredo0")?.is_empty() && !is_up("teredo0")?, "after down");

        // End of file: the helper takes the interface down by itself and exits 0.
        ensure!(h.up(addr(A), 1400).map_err(|e| e.to_string())? == Reply::Applied, "up again");
        let status = h.finish().map_err(|e| e.to_string())?;
        ensure!(status == 0, "helper exit status {status}");
        ensure!(addresses("teredo0")?.is_empty(), "final down left {:?}", addresses("teredo0")?);
        ensure!(!is_up("teredo0")?, "final down left the link up");
        Ok(())
    });
}

#[test]
fn helper_refuses_root_user() {
    in_new_netns("helper_refuses_root_user", || {
        let t = tun("teredo0")?;
        let root = lookup_user("root").map_err(|e| e.to_string())?;
        match helper::spawn(&t, &HelperOptions { user: root, hook: None }) {
            Err(helper::HelperError::Privileges(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// A scratch directory for hook files, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("teredo-net-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(d)
    }

    fn file(&self, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Splits the recorded runs into sorted "NAME=value" lists.
fn runs(log: &str) -> Vec<Vec<String>> {
    log.split("--- run\n")
        .filter(|r| !r.is_empty())
        .map(|r| {
            let mut v: Vec<String> = r.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
            v.sort();
            v
        })
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<String> {
    let mut v: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.sort();
    v
}

#[test]
fn helper_runs_the_client_hook_with_miredo_environment() {
    let scratch = Scratch::new("hook");
    in_new_netns("helper_runs_the_client_hook_with_miredo_environment", || {
        let env_log = scratch.file("env.log", "", 0o666);
        let caps_log = scratch.file("caps.log", "", 0o666);
        // The environment is read from /proc/$$/environ: exactly what the shell was given,
        // before it adds anything of its own. `ip` runs unprivileged with the ambient
        // CAP_NET_ADMIN only.
        let script = format!(
            "#!/bin/sh\n\
             {{ echo '--- run'; /usr/bin/tr '\\0' '\\n' < /proc/$$/environ; }} >> {env}\n\
             /bin/grep -E '^(Cap|Uid)' /proc/$$/status >> {caps}\n\
             if [ \"$STATE\" = up ]; then /usr/sbin/ip link set dev \"$IFACE\" mtu \"$MTU\" up || exit 9; fi\n\
             if [ \"$STATE\" = down ]; then exit 3; fi\n\
             exit 0\n",
            env = env_log.display(),
            caps = caps_log.display()
        );
        let hook = scratch.file("client-hook", &script, 0o755);
        let t = tun("teredo0")?;
        let idx = t.ifindex().to_string();
        let mut h = helper::spawn(&t, &HelperOptions { user: nobody(), hook: Some(hook) })
            .map_err(|e| e.to_string())?;
        for f in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
            let v = proc_status(h.pid(), f)?;
            ensure!(v == "0000000000001000", "helper {f} = {v}");
        }

        let r = h.up(addr(A), 1400).map_err(|e| e.to_string())?;
        ensure!(
            r == Reply::Hook(0),
            "up: {r:?} (caps: {})",
            std::fs::read_to_string(&caps_log).unwrap_or_default()
        );
        ensure!(link("teredo0")?.0 == 1400, "the hook's `ip` did not set the MTU");
        ensure!(
            addresses("teredo0")?.iter().all(|a| !a.starts_with("2001:")),
            "the helper configured the interface itself"
        );
        let r = h.up(addr(B), 1280).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Hook(0), "up B: {r:?}");
        let r = h.up(addr("2001:db8::1"), 1280).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Refused(Refusal::NotTeredo), "refused: {r:?}");
        let r = h.down().map_err(|e| e.to_string())?;
        ensure!(r == Reply::Hook(3), "down: {r:?}");
        ensure!(h.finish().map_err(|e| e.to_string())? == 0, "helper exit status");

        let log = std::fs::read_to_string(&env_log).map_err(|e| e.to_string())?;
        let got = runs(&log);
        let want = vec![
            expect(&[
                ("STATE", "up"),
                ("OLD_STATE", "down"),
                ("IFACE", "teredo0"),
                ("IFINDEX", &idx),
                ("ADDRESS", A),
                ("LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("MTU", "1400"),
            ]),
            expect(&[
                ("STATE", "up"),
                ("OLD_STATE", "up"),
                ("IFACE", "teredo0"),
                ("IFINDEX", &idx),
                ("ADDRESS", B),
                ("LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("MTU", "1280"),
                ("OLD_ADDRESS", A),
                ("OLD_LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("OLD_MTU", "1400"),
            ]),
            expect(&[
                ("STATE", "down"),
                ("OLD_STATE", "up"),
                ("IFACE", "teredo0"),
                ("IFINDEX", &idx),
                ("OLD_ADDRESS", B),
                ("OLD_LLADDRESS", "fe80::ffff:ffff:ffff"),
                ("OLD_MTU", "1280"),
            ]),
            expect(&[("STATE", "down"), ("OLD_STATE", "down"), ("IFACE", "teredo0"), ("IFINDEX", &idx)]),
            expect(&[("STATE", "destroy"), ("OLD_STATE", "down"), ("IFACE", "teredo0"), ("IFINDEX", &idx)]),
        ];
        ensure!(got == want, "hook environments:\n got {got:#?}\nwant {want:#?}");

        let caps = std::fs::read_to_string(&caps_log).map_err(|e| e.to_string())?;
        ensure!(caps.lines().filter(|l| l.starts_with("CapAmb:")).count() == 5, "hook capabilities: {caps}");
        for line in caps.lines() {
            let ok = match line.split_once(':').map(|(k, v)| (k, v.trim())) {
                Some(("CapEff" | "CapPrm" | "CapInh" | "CapAmb" | "CapBnd", v)) => v == "0000000000001000",
                Some(("Uid", v)) => v.split_whitespace().all(|u| u == "65534"),
                _ => true,
            };
            ensure!(ok, "hook ran with {line:?}");
        }
        Ok(())
    });
}

#[test]
fn hook_timeout_kills_a_hanging_script() {
    // No root needed: the hook runs against the loopback interface's index.
    let _serial = common::serial();
    let scratch = Scratch::new("timeout");
    let hook = scratch.file("hang", "#!/bin/sh\nexec /bin/sleep 30\n", 0o755);
    let lo = teredo_net::tun::index_of("lo").unwrap();
    let mut r = teredo_net::hook::HookRunner::new(hook, lo).with_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let status = r.run(teredo_net::hook::HookState::Down).unwrap();
    assert_eq!(status, -1);
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// Runs `ip ARGS` in the test's namespace.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = std::process::Command::new("ip").args(args).output().map_err(|e| e.to_string())?;
    ensure!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    Ok(())
}

/// `count` in-order TCP segments of one flow from `src` to `dst`, each with `payload`
/// bytes, the flags ACK only and a valid checksum (built by etherparse).
fn tcp_segments(src: Ipv6Addr, dst: Ipv6Addr, count: u32, payload: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| {
            let data: Vec<u8> = (0..payload).map(|i| (i as u32 * 7 + k * 13) as u8).collect();
            let b = etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
                .tcp(40_000, 5_001, 1_000 + k * payload as u32, 65_535)
                .ack(77);
            let mut p = Vec::new();
            b.write(&mut p, &data).unwrap();
            p
        })
        .collect()
}

/// The TCP packets to port 5001 read from `t` within `timeout` (the kernel's own ND and
/// MLD packets skipped), super-packets cut by `teredo_proto::offload::Segments`; and how
/// many super-packets there were.
fn read_tcp(t: &Tun, want: usize, timeout: Duration) -> Result<(Vec<Vec<u8>>, usize), String> {
    use teredo_proto::offload::{Segments, VnetHeader};
    let (mut got, mut supers) = (Vec::new(), 0);
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + timeout;
    while got.len() < want && Instant::now() < deadline {
        if !teredo_net::poll::readable(&[t.as_fd()], Duration::from_millis(100)).map_err(|e| e.to_string())?
            [0]
        {
            continue;
        }
        let mut hdr = [0u8; 10];
        let n = match t.recv_offload(&mut hdr, &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.to_string()),
        };
        let p = &buf[..n];
        if n < 44 || p[6] != 6 || u16::from_be_bytes([p[42], p[43]]) != 5_001 {
            continue;
        }
        let h = VnetHeader::parse(&hdr).ok_or("no header")?;
        if h.gso_type != VnetHeader::GSO_NONE {
            supers += 1;
        }
        let mut s = Segments::new(&h, p).map_err(|e| format!("{e} for {h:?}"))?;
        let mut out = vec![0u8; s.max_len()];
        while let Some(n) = s.next_into(&mut out) {
            got.push(out[..n].to_vec());
        }
    }
    Ok((got, supers))
}

#[test]
fn coalesced_and_segmented_packets_survive_the_kernel() {
    // Three TUNs in one forwarding namespace: `join0` (offloads) takes the super-packet our
    // Coalescer made of 20 TCP segments; the kernel forwards it to `plain0` (no offloads),
    // where it must cut it into exactly the 20 original packets (hop limit less one) with
    // the checksums our partial checksum leads to; and the same super-packet for another
    // prefix is forwarded whole to `cut0` (offloads), where our Segments must cut it into
    // the same 20 packets. So the kernel accepts our headers, and both directions agree
    // with it byte for byte.
    use teredo_proto::offload::Coalescer;
    in_new_netns("coalesced_and_segmented_packets_survive_the_kernel", || {
        let opts =
            |name: &str, offload| TunOptions { name: Some(name.into()), offload, ..Default::default() };
        let create = |name: &str, offload| Tun::create(&opts(name, offload)).map_err(|e| e.to_string());
        let (join, plain, cut) = (create("join0", true)?, create("plain0", false)?, create("cut0", true)?);
        ensure!(join.offloads() && cut.offloads(), "the kernel refused TUNSETOFFLOAD");
        for (t, net) in [(&join, "a"), (&plain, "b"), (&cut, "c")] {
            t.set_nonblocking(true).map_err(|e| e.to_string())?;
            ip(&["link", "set", t.name(), "mtu", "1500", "up"])?;
            ip(&["addr", "add", &format!("2001:db8:{net}::1/64"), "dev", t.name(), "nodad"])?;
        }
        let o = std::process::Command::new("sysctl")
            .args(["-qw", "net.ipv6.conf.all.forwarding=1"])
            .output()
            .map_err(|e| e.to_string())?;
        ensure!(o.status.success(), "sysctl: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(300));

        for (out, net) in [(&plain, "b"), (&cut, "c")] {
            let originals =
                tcp_segments(addr("2001:db8:a::2"), addr(&format!("2001:db8:{net}::2")), 20, 1_200);
            let mut frames = Vec::new();
            let mut coalescer = Coalescer::new(4);
            for p in &originals {
                coalescer.push(p, &mut |h, p| frames.push((*h, p.to_vec())));
            }
            coalescer.flush(&mut |h, p| frames.push((*h, p.to_vec())));
            ensure!(frames.len() == 1, "{} frames for one flow of 20 segments", frames.len());
            let (h, frame) = &frames[0];
            let written =
                join.send_offload(h, frame).map_err(|e| format!("the kernel refused our frame: {e}"))?;
            ensure!(written == frame.len(), "short write");

            let expected: Vec<Vec<u8>> = originals
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    p[7] -= 1;
                    p
                })
                .collect();
            let (got, supers) = read_tcp(out, 20, Duration::from_secs(5))?;
            if out.offloads() {
                ensure!(supers == 1, "{}: {supers} super-packets read, not 1", out.name());
            }
            ensure!(got.len() == expected.len(), "{}: {} packets of 20", out.name(), got.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                ensure!(g == e, "{}: packet {i} differs from the original", out.name());
            }
        }
        Ok(())
    });
}
