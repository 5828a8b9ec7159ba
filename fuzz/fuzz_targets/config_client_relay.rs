//! Fuzz target: the configuration reader, on any bytes as a client_relay file
//! (see teredo::config::fuzz::client_relay).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo::config::fuzz::client_relay(data));
