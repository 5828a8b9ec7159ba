//! Root tests of the platform layer on Linux, each in a network namespace of its own that
//! is connected to nothing: the TUN device, the Miredo-compatible interface `up`/`down`
//! over netlink (checked with `ip -j`), the privileged helper end to end (validation,
//! capabilities, final `down` on end of file), the client-hook variant (exact Miredo
//! environment) and per-peer steering (reuseport cBPF and TUN eBPF programs of
//! `teredo_net::steer`). Without root they print SKIP, or fail under CI=true.

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
use teredo_proto::address::TEREDO_PREFIX;

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
        // SAFETY: in_new_netns runs the body in a forked, single-threaded child.
        let mut h = unsafe {
            helper::spawn(&t, &HelperOptions { user: user.clone(), hook: None, route: None, seccomp: true })
        }
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
fn relay_helper_adds_and_deletes_only_its_route() {
    in_new_netns("relay_helper_adds_and_deletes_only_its_route", || {
        use teredo_net::ifconfig::{Ipv6Prefix, Route};
        let t = tun("teredo0")?;
        let up = std::process::Command::new("ip").args(["link", "set", "teredo0", "up"]).status();
        ensure!(up.is_ok_and(|s| s.success()), "ip link set teredo0 up");
        let destination = Ipv6Prefix::new(addr("2001::"), 32).ok_or("prefix")?;
        let route = Route { destination, ifindex: t.ifindex(), metric: 1024 };
        // SAFETY: in_new_netns runs the body in a forked, single-threaded child.
        let mut h = unsafe {
            helper::spawn(
                &t,
                &HelperOptions { user: nobody(), hook: None, route: Some(route), seccomp: true },
            )
        }
        .map_err(|e| e.to_string())?;
        ensure!(proc_status(h.pid(), "CapEff")? == "0000000000001000", "CapEff");
        // It keeps no descriptor of the TUN.
        let fds = std::fs::read_dir(format!("/proc/{}/fd", h.pid())).map_err(|e| e.to_string())?;
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).map_err(|e| e.to_string())?;
            ensure!(!target.to_string_lossy().contains("tun"), "the helper holds {}", target.display());
        }
        let none = routes("teredo0")?;
        ensure!(!none.contains(&"2001::/32 metric 1024".to_owned()), "route before announce: {none:?}");
        for _ in 0..2 {
            ensure!(h.announce().map_err(|e| e.to_string())? == Reply::Applied, "announce");
            ensure!(
                routes("teredo0")?.contains(&"2001::/32 metric 1024".to_owned()),
                "{:?}",
                routes("teredo0")
            );
        }
        for _ in 0..2 {
            ensure!(h.withdraw().map_err(|e| e.to_string())? == Reply::Applied, "withdraw");
            ensure!(
                !routes("teredo0")?.contains(&"2001::/32 metric 1024".to_owned()),
                "{:?}",
                routes("teredo0")
            );
        }
        // A relay's helper configures no client address.
        let r = h.up(addr(A), 1400).map_err(|e| e.to_string())?;
        ensure!(r == Reply::Refused(Refusal::WrongRole), "up: {r:?}");
        ensure!(h.down().map_err(|e| e.to_string())? == Reply::Refused(Refusal::WrongRole), "down");
        ensure!(addresses("teredo0")?.iter().all(|a| !a.starts_with("2001:")), "{:?}", addresses("teredo0"));
        // The daemon's end closes: the route goes.
        ensure!(h.announce().map_err(|e| e.to_string())? == Reply::Applied, "announce again");
        ensure!(h.finish().map_err(|e| e.to_string())? == 0, "exit status");
        ensure!(
            !routes("teredo0")?.contains(&"2001::/32 metric 1024".to_owned()),
            "route left after the end"
        );
        Ok(())
    });
}

#[test]
fn client_helper_refuses_route_requests() {
    in_new_netns("client_helper_refuses_route_requests", || {
        let t = tun("teredo0")?;
        // SAFETY: in_new_netns runs the body in a forked, single-threaded child.
        let mut h = unsafe {
            helper::spawn(&t, &HelperOptions { user: nobody(), hook: None, route: None, seccomp: true })
        }
        .map_err(|e| e.to_string())?;
        ensure!(h.announce().map_err(|e| e.to_string())? == Reply::Refused(Refusal::WrongRole), "announce");
        ensure!(h.withdraw().map_err(|e| e.to_string())? == Reply::Refused(Refusal::WrongRole), "withdraw");
        Ok(())
    });
}

#[test]
fn helper_refuses_root_user() {
    in_new_netns("helper_refuses_root_user", || {
        let t = tun("teredo0")?;
        let root = lookup_user("root").map_err(|e| e.to_string())?;
        // SAFETY: in_new_netns runs the body in a forked, single-threaded child.
        match unsafe {
            helper::spawn(&t, &HelperOptions { user: root, hook: None, route: None, seccomp: true })
        } {
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
        // SAFETY: in_new_netns runs the body in a forked, single-threaded child.
        let mut h = unsafe {
            helper::spawn(&t, &HelperOptions { user: nobody(), hook: Some(hook), route: None, seccomp: true })
        }
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

/// `count` in-order TCP segments (`udp` false) or UDP datagrams of one flow from `src` to
/// `dst` port 5001, each with `payload` bytes, the TCP flags ACK only, and a valid checksum
/// (built by etherparse).
fn flow_packets(src: Ipv6Addr, dst: Ipv6Addr, udp: bool, count: u32, payload: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| {
            let data: Vec<u8> = (0..payload).map(|i| (i as u32 * 7 + k * 13) as u8).collect();
            let b = etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64);
            let mut p = Vec::new();
            if udp {
                b.udp(40_000, 5_001).write(&mut p, &data).unwrap();
            } else {
                b.tcp(40_000, 5_001, 1_000 + k * payload as u32, 65_535)
                    .ack(77)
                    .write(&mut p, &data)
                    .unwrap();
            }
            p
        })
        .collect()
}

/// One packet and its virtio-net header read from `t` into `buf`, waiting at most `wait`;
/// `None` if nothing came.
fn recv_within(t: &Tun, buf: &mut [u8], wait: Duration) -> Result<Option<([u8; 10], usize)>, String> {
    if !teredo_net::poll::readable(&[t.as_fd()], wait).map_err(|e| e.to_string())?[0] {
        return Ok(None);
    }
    let mut hdr = [0u8; 10];
    match t.recv_offload(&mut hdr, buf) {
        Ok(n) => Ok(Some((hdr, n))),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The TCP and UDP packets to port 5001 read from `t` within `timeout` (the kernel's own
/// ND and MLD packets skipped), super-packets cut by `teredo_proto::offload::Segments`; and
/// how many super-packets there were.
fn read_flow(t: &Tun, want: usize, timeout: Duration) -> Result<(Vec<Vec<u8>>, usize), String> {
    use teredo_proto::offload::{Segments, VnetHeader};
    let (mut got, mut supers) = (Vec::new(), 0);
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + timeout;
    while got.len() < want && Instant::now() < deadline {
        let Some((hdr, n)) = recv_within(t, &mut buf, Duration::from_millis(100))? else { continue };
        let p = &buf[..n];
        if n < 44 || !matches!(p[6], 6 | 17) || u16::from_be_bytes([p[42], p[43]]) != 5_001 {
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
    // Coalescer made of 20 TCP segments, then of 20 UDP datagrams; the kernel forwards it
    // to `plain0` (no offloads), where it must cut it into exactly the 20 original packets
    // (hop limit less one) with the checksums our partial checksum leads to; and the same
    // super-packet for another prefix is forwarded whole to `cut0` (offloads), where our
    // Segments must cut it into the same 20 packets. So the kernel accepts our headers, and
    // both directions agree with it byte for byte.
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

        for (out, net, udp) in
            [(&plain, "b", false), (&cut, "c", false), (&plain, "b", true), (&cut, "c", true)]
        {
            let originals =
                flow_packets(addr("2001:db8:a::2"), addr(&format!("2001:db8:{net}::2")), udp, 20, 1_200);
            let mut frames = Vec::new();
            let mut coalescer = Coalescer::new(4);
            for p in &originals {
                coalescer.push(p, &mut |h, p| frames.push((*h, p.to_vec())));
            }
            coalescer.flush(&mut |h, p| frames.push((*h, p.to_vec())));
            ensure!(frames.len() == 1, "{} frames for one flow of 20 packets (UDP {udp})", frames.len());
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
            let (got, supers) = read_flow(out, 20, Duration::from_secs(5))?;
            if out.offloads() {
                ensure!(supers == 1, "{}: {supers} super-packets read, not 1", out.name());
            }
            ensure!(got.len() == expected.len(), "{}: {} packets of 20", out.name(), got.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                ensure!(g == e, "{}: packet {i} (UDP {udp}) differs from the original", out.name());
            }
        }
        Ok(())
    });
}

/// The steering tests' key (the daemon draws one at random).
const STEERING_KEY: u64 = 0x7e7e_d0d0_0bad_f00d;

/// A pseudo-random sequence for the steering tests (no dependency, same every run).
fn lcg(state: &mut u32) -> u32 {
    *state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    *state
}

/// One reuseport group of `n` sockets on 127.0.0.1:`port` steered by `steer_udp`: each of 40
/// clients on 127.0.0.1..9 sends one datagram, which must reach socket `shard(src, n, key)`,
/// except that every third one carries an IPv6 packet from a Teredo address of another
/// mapping (a client behind a symmetric NAT), which must reach the shard of that mapping.
/// The sockets have UDP GRO on, as the daemon's do (another socket lookup in the kernel).
fn check_udp_steering(port: u16, n: u32) -> Result<(), String> {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
    use teredo_net::steer::{shard, steer_udp};
    let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let group: Vec<UdpSocket> = (0..n)
        .map(|_| {
            teredo_net::udp::bind_udp(at, true).map(|s| {
                teredo_net::udp::enable_gro(&s);
                UdpSocket::from(s)
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bind {at}: {e}"))?;
    steer_udp(&group[0], n, TEREDO_PREFIX, STEERING_KEY).map_err(|e| e.to_string())?;
    for s in &group {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    const CLIENTS: usize = 40;
    let mut sent = std::collections::HashMap::new();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let c =
            UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 1 + (i % 9) as u8), 0)).map_err(|e| e.to_string())?;
        let SocketAddr::V4(from) = c.local_addr().map_err(|e| e.to_string())? else {
            return Err("not IPv4".into());
        };
        if i % 4 == 3 {
            // An IPv4 header with options (three NOPs and an end of list: IHL 6), so that the
            // program must read the header length rather than assume 20 bytes.
            teredo_net::sockopt::set_bytes(&c, libc::IPPROTO_IP, libc::IP_OPTIONS, &[1, 1, 1, 0])
                .map_err(|e| format!("IP_OPTIONS: {e}"))?;
        }
        if i % 3 == 2 {
            // A bubble from the Teredo address of the mapping 198.51.100.<i>:<40000 + i>.
            let (ip, port) = (Ipv4Addr::new(198, 51, 100, i as u8), 40_000 + i as u16);
            let mut b = [0u8; 40];
            b[0] = 0x60;
            b[6] = 59;
            b[8..12].copy_from_slice(&TEREDO_PREFIX.to_be_bytes());
            b[18..20].copy_from_slice(&(!port).to_be_bytes());
            b[20..24].copy_from_slice(&(!u32::from(ip)).to_be_bytes());
            c.send_to(&b, at).map_err(|e| e.to_string())?;
            sent.insert(from, shard(ip, port, n, STEERING_KEY));
        } else {
            // Short datagrams, and long ones that look like IPv6 ('c' is 0x63) from a
            // source outside the prefix: steered by their outer source.
            let mut payload = format!("client {i}").into_bytes();
            if i % 2 == 0 {
                payload.resize(48, b'.');
            }
            c.send_to(&payload, at).map_err(|e| e.to_string())?;
            sent.insert(from, shard(*from.ip(), from.port(), n, STEERING_KEY));
        }
        clients.push(c);
    }
    let mut got = std::collections::HashMap::new();
    let mut per_socket = vec![0usize; n as usize];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    while got.len() < CLIENTS && Instant::now() < deadline {
        let fds: Vec<_> = group.iter().map(|s| s.as_fd()).collect();
        let ready =
            teredo_net::poll::readable(&fds, Duration::from_millis(100)).map_err(|e| e.to_string())?;
        for (k, s) in group.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            while let Ok((_, SocketAddr::V4(from))) = s.recv_from(&mut buf) {
                ensure!(got.insert(from, k as u32).is_none(), "n={n}: two datagrams from {from}");
                per_socket[k] += 1;
            }
        }
    }
    ensure!(got.len() == CLIENTS, "n={n}: {} of {CLIENTS} datagrams received", got.len());
    for (from, k) in &got {
        let want = sent.get(from).ok_or_else(|| format!("n={n}: a datagram from unknown {from}"))?;
        ensure!(
            k == want,
            "n={n}: datagram from {from} reached socket {k}, shard says {want} ({} wrong of {})",
            got.iter().filter(|(f, k)| sent.get(f) != Some(k)).count(),
            got.len()
        );
    }
    ensure!(per_socket.iter().all(|&c| c > 0), "n={n}: some socket received nothing: {per_socket:?}");
    Ok(())
}

#[test]
fn reuseport_steering_sends_each_source_to_its_shard() {
    in_new_netns("reuseport_steering_sends_each_source_to_its_shard", || {
        ip(&["link", "set", "lo", "up"])?;
        check_udp_steering(3544, 2)?;
        check_udp_steering(3545, 3)?;
        Ok(())
    });
}

/// A multi-queue TUN `name` of `n` queues steered by `steer_tun`: UDP datagrams sent to 40
/// Teredo addresses must come out of queue `shard(ip, port, n, key)` of their client, and
/// packets to other destinations (a 2002::/16 one, the kernel's own multicast) out of
/// queue 0.
fn check_tun_steering(name: &str, local: &str, n: u32) -> Result<(), String> {
    use std::net::{Ipv4Addr, UdpSocket};
    use teredo_net::steer::{shard, steer_tun};
    let first = Tun::create(&TunOptions { name: Some(name.into()), multi_queue: true, ..Default::default() })
        .map_err(|e| e.to_string())?;
    let mut queues = vec![first];
    for _ in 1..n {
        queues.push(queues[0].clone_queue().map_err(|e| e.to_string())?);
    }
    steer_tun(&queues[0], n, 0x2001_0000, STEERING_KEY).map_err(|e| e.to_string())?;
    for q in &queues {
        q.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    ip(&["link", "set", "dev", name, "up"])?;
    ip(&["-6", "addr", "add", local, "dev", name, "nodad"])?;
    ip(&["-6", "route", "add", "2001::/32", "dev", name])?;
    ip(&["-6", "route", "add", "2002::/16", "dev", name])?;

    let mut expected = std::collections::HashMap::new();
    let mut state = n;
    for _ in 0..40 {
        let (client, port) = (Ipv4Addr::from(lcg(&mut state)), (lcg(&mut state) >> 16) as u16);
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&[0x20, 0x01, 0, 0, 0xc0, 0, 0x02, 0x01]);
        a[10..12].copy_from_slice(&(port ^ 0xffff).to_be_bytes());
        a[12..].copy_from_slice(&(!u32::from(client)).to_be_bytes());
        expected.insert(Ipv6Addr::from(a), shard(client, port, n, STEERING_KEY));
    }
    let other = addr("2002:c000:201::1");
    expected.insert(other, 0);

    let sock = UdpSocket::bind("[::]:0").map_err(|e| e.to_string())?;
    for dst in expected.keys() {
        // The address may still be tentative for a moment, even with nodad: retry.
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Err(e) = sock.send_to(b"steer", (*dst, 9)) {
            ensure!(Instant::now() < deadline, "send to {dst}: {e}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let mut got = std::collections::HashMap::new();
    let mut per_queue = vec![0usize; n as usize];
    let mut others = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    while got.len() < expected.len() && Instant::now() < deadline {
        let fds: Vec<_> = queues.iter().map(|q| q.as_fd()).collect();
        let ready =
            teredo_net::poll::readable(&fds, Duration::from_millis(100)).map_err(|e| e.to_string())?;
        for (k, q) in queues.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            while let Ok(len) = q.recv(&mut buf) {
                let p = &buf[..len];
                ensure!(len >= 40 && p[0] >> 4 == 6, "{name}: not an IPv6 packet from queue {k}");
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap());
                if p[6] == 17 && expected.contains_key(&dst) {
                    ensure!(got.insert(dst, k as u32).is_none(), "{name}: two packets to {dst}");
                    per_queue[k] += 1;
                } else {
                    // The kernel's own packets (MLD, router solicitations): not Teredo.
                    ensure!(dst.segments()[..2] != [0x2001, 0], "{name}: unexpected packet to {dst}");
                    ensure!(k == 0, "{name}: a packet to {dst} came out of queue {k}, not 0");
                    others += 1;
                }
            }
        }
    }
    ensure!(got.len() == expected.len(), "{name}: {} of {} packets read", got.len(), expected.len());
    for (dst, k) in &got {
        ensure!(
            *k == expected[dst],
            "{name}: packet to {dst} came out of queue {k}, shard says {}",
            expected[dst]
        );
    }
    ensure!(per_queue.iter().all(|&c| c > 0), "{name}: some queue carried nothing: {per_queue:?}");
    eprintln!("{name}: {per_queue:?} steered packets per queue, {others} others on queue 0");
    Ok(())
}

#[test]
fn tun_steering_sends_each_teredo_destination_to_its_queue() {
    in_new_netns("tun_steering_sends_each_teredo_destination_to_its_queue", || {
        check_tun_steering("steer2", "fd00::1/64", 2)?;
        check_tun_steering("steer3", "fd01::1/64", 3)?;
        Ok(())
    });
}

#[test]
fn udp_super_packets_are_read_whole_and_cut_into_datagrams() {
    // A UDP socket that sends with UDP_SEGMENT (as QUIC stacks do) to a Teredo destination
    // routed into an offloading TUN: the kernel hands the whole super-packet over
    // (GSO_UDP_L4, Linux 6.2), and Segments cuts it into the datagrams the application
    // meant, each with its own length and a valid checksum.
    use teredo_proto::checksum::Checksum;
    use teredo_proto::offload::{Segments, VnetHeader};
    in_new_netns("udp_super_packets_are_read_whole_and_cut_into_datagrams", || {
        let t = Tun::create(&TunOptions { name: Some("uso0".into()), offload: true, ..Default::default() })
            .map_err(|e| e.to_string())?;
        t.set_nonblocking(true).map_err(|e| e.to_string())?;
        ip(&["link", "set", "uso0", "mtu", "1500", "up"])?;
        ip(&["addr", "add", "fd00::1/64", "dev", "uso0", "nodad"])?;
        ip(&["route", "add", "2001::/32", "dev", "uso0"])?;
        let dst: Ipv6Addr = "2001:0:c000:201:0:63bf:3fff:fdd2".parse().unwrap();
        let sock = std::net::UdpSocket::bind("[fd00::1]:0").map_err(|e| e.to_string())?;
        teredo_net::sockopt::set_int(&sock, libc::SOL_UDP, libc::UDP_SEGMENT, 1000)
            .map_err(|e| format!("UDP_SEGMENT: {e}"))?;
        let data: Vec<u8> = (0..4_500u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut buf = vec![0u8; 65_536];
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            // The new address may be briefly unusable as a source: send again until it works.
            let _ = sock.send_to(&data, (dst, 9_000));
            let Some((hdr, n)) = recv_within(&t, &mut buf, Duration::from_millis(200))? else { continue };
            let p = &buf[..n];
            if n < 48 || p[6] != 17 || p[24..40] != dst.octets() {
                continue;
            }
            let h = VnetHeader::parse(&hdr).ok_or("no header")?;
            ensure!(t.offloads(), "no offloads");
            ensure!(h.gso_type == VnetHeader::GSO_UDP_L4, "not a UDP super-packet: {h:?}");
            let mut s = Segments::new(&h, p).map_err(|e| e.to_string())?;
            ensure!(s.count() == 5, "{} datagrams, not 5", s.count());
            let mut out = vec![0u8; s.max_len()];
            let mut joined = Vec::new();
            while let Some(m) = s.next_into(&mut out) {
                let d = &out[..m];
                let udp_len = usize::from(u16::from_be_bytes([d[44], d[45]]));
                ensure!(
                    udp_len == m - 40 && usize::from(u16::from_be_bytes([d[4], d[5]])) == m - 40,
                    "lengths"
                );
                let mut c = Checksum::new();
                c.add_pseudo_header(&addr("fd00::1"), &dst, udp_len as u32, 17).add(&d[40..]);
                ensure!(c.finish() == 0, "a datagram's UDP checksum is wrong");
                joined.extend_from_slice(&d[48..]);
            }
            ensure!(joined == data, "the datagrams do not carry the data sent");
            return Ok(());
        }
        Err("no UDP super-packet came out of the TUN".into())
    });
}
