//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same entry
//! points the fuzz targets call, on the stable toolchain, so that every input the fuzzer
//! ever kept stays a regression test.

use std::path::PathBuf;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for e in entries {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
    eprintln!("{target}: replayed {n} inputs");
}

#[test]
fn encap_corpus() {
    replay("encap", teredo_proto::fuzz::encap);
}

#[test]
fn ipv6_corpus() {
    replay("ipv6", teredo_proto::fuzz::ipv6);
}

#[test]
fn trailers_corpus() {
    replay("trailers", teredo_proto::fuzz::trailers);
}

#[test]
fn address_corpus() {
    replay("address", teredo_proto::fuzz::address);
}

#[test]
fn offload_corpus() {
    replay("offload", teredo_proto::fuzz::offload);
}

#[test]
fn tunnel_client_corpus() {
    replay("tunnel_client", teredo_proto::fuzz::tunnel_client);
}

#[test]
fn tunnel_relay_corpus() {
    replay("tunnel_relay", teredo_proto::fuzz::tunnel_relay);
}

#[test]
fn endpoint_corpus() {
    replay("endpoint", teredo_proto::fuzz::endpoint);
}

#[test]
fn server_corpus() {
    replay("server", teredo_proto::fuzz::server);
}

#[test]
fn coalescer_corpus() {
    replay("coalescer", teredo_proto::fuzz::coalescer);
}
