//! Fuzz target: a relay's data path driven by a sequence of operations (see
//! teredo_proto::fuzz::tunnel_relay).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::tunnel_relay(data));
