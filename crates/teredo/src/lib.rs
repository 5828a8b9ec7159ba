//! The `teredo` command as a library: reading Miredo's configuration files
//! ([`config`]) and the command-line interface ([`cli`]). The binary in `main.rs` only
//! parses the command line and calls [`cli::run`]; the daemons will use [`config`].

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod daemon;
