//! Fuzz target: the TUN coalescer on arbitrary packets and calls (see
//! teredo_proto::fuzz::coalescer).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::coalescer(data));
