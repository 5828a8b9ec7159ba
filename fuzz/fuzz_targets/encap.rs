//! Fuzz target: the encap parser of teredo-proto (see teredo_proto::fuzz::encap).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::encap(data));
