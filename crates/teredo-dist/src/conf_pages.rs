//! The section-5 pages of `miredo.conf` and `miredo-server.conf`, written by hand in
//! `man/` (prose about every directive, Miredo's and teredo's own, with its default) and
//! embedded in this crate, so that `teredo-dist` writes every page. The tests check that
//! each directive teredo knows has its entry.

use std::path::PathBuf;

use crate::DistFile;

/// `miredo.conf(5)`, the client and relay file.
pub const MIREDO_CONF: &str = include_str!("../man/miredo.conf.5");
/// `miredo-server.conf(5)`, the server file.
pub const MIREDO_SERVER_CONF: &str = include_str!("../man/miredo-server.conf.5");

/// Both pages, at `man/man5/`.
pub fn pages() -> Vec<DistFile> {
    [("miredo.conf.5", MIREDO_CONF), ("miredo-server.conf.5", MIREDO_SERVER_CONF)]
        .into_iter()
        .map(|(name, text)| DistFile {
            path: PathBuf::from("man/man5").join(name),
            contents: text.as_bytes().to_vec(),
        })
        .collect()
}
