//! Every Teredo address in the shipped captures is decoded the same way by our decoder and
//! by tshark (Wireshark's IPv6 dissector, with the Teredo heuristic on so that traffic on
//! relay ports is seen too). Under `CI=true` a missing tshark fails the test.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

use teredo_proto::address::TeredoAddress;

use crate::pcap::path;

const CAPTURES: &[&str] = &[
    "zeek-Teredo.pcap",
    "ndpi-teredo.pcap",
    "zeek-gtp8_teredo.pcap",
    "zeek-teredo_bubble_with_payload.pcap",
    "zeek-teredo-udp-in-udp.pcap",
];

fn tshark_available() -> bool {
    let ok = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tshark is required under CI=true (install it with .ci/install-deps)");
        }
        eprintln!("SKIP: tshark is not installed");
    }
    ok
}

fn list(field: &str) -> Vec<&str> {
    if field.is_empty() { Vec::new() } else { field.split(',').collect() }
}

#[test]
fn every_teredo_address_decodes_as_tshark_does() {
    if !tshark_available() {
        return;
    }
    let mut checked = 0;
    for cap in CAPTURES {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(path(cap))
            .args(["--enable-heuristic", "teredo_udp", "-Y", "ipv6", "-T", "fields", "-E", "separator=|"])
            .args(["-E", "occurrence=a", "-E", "aggregator=,"])
            .args([
                "-e",
                "ipv6.src",
                "-e",
                "ipv6.src_ts_ipv4",
                "-e",
                "ipv6.src_tc_port",
                "-e",
                "ipv6.src_tc_ipv4",
            ])
            .args([
                "-e",
                "ipv6.dst",
                "-e",
                "ipv6.dst_ts_ipv4",
                "-e",
                "ipv6.dst_tc_port",
                "-e",
                "ipv6.dst_tc_ipv4",
            ])
            .output()
            .expect("tshark runs");
        assert!(out.status.success(), "tshark failed on {cap}: {}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let f: Vec<&str> = line.split('|').collect();
            assert_eq!(f.len(), 8, "{cap}: {line}");
            for side in [&f[0..4], &f[4..8]] {
                let ours: Vec<(Ipv4Addr, u16, Ipv4Addr)> = list(side[0])
                    .iter()
                    .filter_map(|a| TeredoAddress::from_ipv6(&a.parse::<Ipv6Addr>().unwrap()))
                    .filter(|t| t.prefix == teredo_proto::address::TEREDO_PREFIX)
                    .map(|t| (t.server, t.mapped_port, t.mapped_addr))
                    .collect();
                let (s, p, c) = (list(side[1]), list(side[2]), list(side[3]));
                let theirs: Vec<(Ipv4Addr, u16, Ipv4Addr)> = (0..s.len())
                    .map(|i| (s[i].parse().unwrap(), p[i].parse().unwrap(), c[i].parse().unwrap()))
                    .collect();
                assert_eq!(ours, theirs, "{cap}: {line}");
                checked += ours.len();
            }
        }
    }
    // zeek-Teredo.pcap alone has dozens of Teredo packets on the relay port.
    assert!(checked >= 50, "only {checked} Teredo addresses compared");
    eprintln!("{checked} Teredo addresses decoded identically by teredo-proto and tshark");
}
