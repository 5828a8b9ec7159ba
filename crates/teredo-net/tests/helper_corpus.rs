//! Replays the committed corpus of the `helper_messages` fuzz target
//! (`fuzz/corpus/helper_messages/`) through the entry point it calls, on the stable
//! toolchain, so that every input the fuzzer kept stays a regression test. Needs no root.

use std::path::PathBuf;

#[test]
fn helper_messages_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/helper_messages");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for e in entries {
        let p = e.unwrap().path();
        teredo_net::helper::fuzz::messages(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
    eprintln!("helper_messages: replayed {n} inputs");
}
