//! Fuzz target: the privileged helper's decisions on a stream of requests from the worker,
//! and the worker's reading of replies (see teredo_net::helper::fuzz::messages).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_net::helper::fuzz::messages(data));
