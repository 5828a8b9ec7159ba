//! Fuzz target: the configuration reader, on any bytes as a server file
//! (see teredo::config::fuzz::server).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo::config::fuzz::server(data));
