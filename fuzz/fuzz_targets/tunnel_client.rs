//! Fuzz target: a qualified client's data path driven by a sequence of operations (see
//! teredo_proto::fuzz::tunnel_client).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::tunnel_client(data));
