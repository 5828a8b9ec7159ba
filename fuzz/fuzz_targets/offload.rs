//! Fuzz target: TUN offload segmentation and coalescing (see teredo_proto::fuzz::offload).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| teredo_proto::fuzz::offload(data));
