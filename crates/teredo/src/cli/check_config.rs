//! `teredo check-config [--server] [FILE]`: checks a Miredo configuration file without
//! using the network, like `miredo-checkconf` (miredo-facts §1.2), which also fails on
//! mere warnings. Unlike it, it also checks `miredo-server.conf` and needs no DNS.
//!
//! Problems go to standard error, one per line, as `FILE:LINE: message` (`FILE: message`
//! for the whole file); a clean file prints `FILE: OK` on standard output.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_FAILURE, EXIT_OK};
use crate::config::{
    ClientRelayOverrides, DEFAULT_CLIENT_RELAY_FILE, DEFAULT_SERVER_FILE, Diagnostic, LoadError,
    ServerOverrides, load_client_relay, load_server,
};

/// Arguments of `teredo check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Check a server configuration (miredo-server.conf) instead of a client or relay one.
    #[arg(long)]
    pub server: bool,
    /// The file to check [default: /etc/miredo/miredo.conf, or
    /// /etc/miredo/miredo-server.conf with --server].
    pub file: Option<PathBuf>,
}

pub(super) fn run(args: &CheckConfigArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let default = if args.server { DEFAULT_SERVER_FILE } else { DEFAULT_CLIENT_RELAY_FILE };
    let path = args.file.clone().unwrap_or_else(|| PathBuf::from(default));
    let diagnostics: Result<Vec<Diagnostic>, LoadError> = if args.server {
        load_server(&path, &ServerOverrides::default()).map(|p| p.diagnostics)
    } else {
        load_client_relay(&path, &ClientRelayOverrides::default()).map(|p| p.diagnostics)
    };
    match diagnostics {
        Err(e) => {
            writeln!(err, "{e}")?;
            Ok(EXIT_FAILURE)
        }
        Ok(diagnostics) if diagnostics.is_empty() => {
            writeln!(out, "{}: OK", path.display())?;
            Ok(EXIT_OK)
        }
        Ok(diagnostics) => {
            for d in &diagnostics {
                writeln!(err, "{d}")?;
            }
            Ok(EXIT_FAILURE)
        }
    }
}
