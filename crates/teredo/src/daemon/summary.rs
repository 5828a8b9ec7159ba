//! The line a client or relay logs when it stops: its workers' counters, summed.

use teredo_proto::status::{Counters, add_counters, counter};

use super::worker::Snapshot;

/// `[qualification: ...; ]N sent, N delivered, ..., N refused by the TUN[; TUN offloads: ...]`
/// from the workers' last snapshots (peers also given per worker when there are several).
pub fn tunnel_line(last: &[Snapshot], offloads: bool) -> String {
    let mut c = Counters::new();
    let mut peers = Vec::new();
    for s in last {
        add_counters(&mut c, s.counters());
        match s {
            Snapshot::Client(x) => peers.push(x.peers),
            Snapshot::Relay(x) => peers.push(x.peers),
            Snapshot::Server(_) => {}
        }
    }
    let get = |n: &str| counter(&c, n).unwrap_or(0);
    let qualification = if last.iter().any(|s| matches!(s, Snapshot::Client(_))) {
        format!(
            "qualification: {} RSs sent, {} RAs accepted, {} rejected, {} timeouts, {} up, {} down; ",
            get("rs_sent"),
            get("ra_accepted"),
            get("ra_rejected"),
            get("rs_timeouts"),
            get("qualifications"),
            get("losses")
        )
    } else {
        String::new()
    };
    let per_worker = if peers.len() > 1 {
        let v: Vec<String> = peers.iter().map(usize::to_string).collect();
        format!(" ({} by worker)", v.join("+"))
    } else {
        String::new()
    };
    let offload = if offloads {
        format!(
            "; TUN offloads: {} super-packets read cut into {} packets, {} written joining {} packets, \
             {} unusable, {} refused by the kernel, {} not joined for their checksum",
            get("offload_super_packets_read"),
            get("offload_packets_cut"),
            get("offload_super_packets_written"),
            get("offload_packets_joined"),
            get("offload_unusable_reads"),
            get("offload_refused_by_kernel"),
            get("offload_not_joined_checksum")
        )
    } else {
        String::new()
    };
    format!(
        "{qualification}{} sent, {} delivered, {} bubbles sent, {} echo tests, {} unreachables, {} dropped, {} \
         peers{per_worker}, {} refused by the socket, {} refused by the TUN{offload}",
        get("sent"),
        get("delivered"),
        get("bubbles_sent"),
        get("echo_tests_sent"),
        get("unreachables_sent"),
        get("dropped"),
        peers.iter().sum::<usize>(),
        get("socket_refused"),
        get("tun_refused")
    )
}
