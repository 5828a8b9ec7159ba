//! Fuzz target: the Teredo server on a sequence of datagrams (see
//! teredo_proto::fuzz::server).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::server(data));
