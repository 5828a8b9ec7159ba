//! Fuzz target: a client endpoint (qualification and data path) driven by a sequence of
//! operations (see teredo_proto::fuzz::endpoint).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::endpoint(data));
