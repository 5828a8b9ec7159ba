//! Fuzz target: the trailers parser of teredo-proto (see teredo_proto::fuzz::trailers).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::trailers(data));
