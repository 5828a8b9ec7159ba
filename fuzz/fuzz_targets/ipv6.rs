//! Fuzz target: the ipv6 parser of teredo-proto (see teredo_proto::fuzz::ipv6).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::ipv6(data));
