//! The `teredo` command as a library: reading Miredo's configuration files ([`config`]),
//! the command-line interface ([`cli`]) and the daemons ([`daemon`]). The binary in
//! `main.rs` only parses the command line and calls [`cli::run`].

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod daemon;
