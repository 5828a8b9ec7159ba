//! Fuzz target: the address parser of teredo-proto (see teredo_proto::fuzz::address).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::address(data));
