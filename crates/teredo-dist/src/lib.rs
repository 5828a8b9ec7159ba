//! The files of teredo's distribution that are made from its code rather than written by
//! hand, for `scripts/package`: the section-8 man pages of `teredo`, its subcommands and
//! the Miredo entry points, generated from the one clap definition
//! ([`teredo::cli::Cli`], [`teredo::cli::miredo::EntryPoint::command`]) by clap_mangen
//! ([`man`]); the section-5 pages of the two configuration files, written by hand and
//! embedded here ([`conf_pages`]); and the bash, zsh and fish completions from
//! clap_complete ([`completions`]).
//!
//! [`files`] lists them all with their paths as installed under `/usr/share`; the
//! `teredo-dist DIR` binary writes them under `DIR`.

#![warn(missing_docs)]

pub mod completions;
pub mod conf_pages;
pub mod man;

use std::path::PathBuf;

/// One generated file: its path relative to `/usr/share` (and to the output directory of
/// `teredo-dist`), and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistFile {
    /// E.g. `man/man8/teredo.8` or `bash-completion/completions/teredo`.
    pub path: PathBuf,
    /// The bytes of the file.
    pub contents: Vec<u8>,
}

/// Every generated file: man pages, then completions.
pub fn files() -> std::io::Result<Vec<DistFile>> {
    let mut all = man::pages()?;
    all.extend(conf_pages::pages());
    all.extend(completions::scripts()?);
    Ok(all)
}
