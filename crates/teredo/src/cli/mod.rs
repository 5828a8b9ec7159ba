//! The `teredo` command line (clap derive): the subcommands and their dispatch, and
//! Miredo's program names as entry points of the same binary ([`miredo`]).
//!
//! Exit status, as Miredo's (miredo-facts §1.2): 0 on success, 1 when the subcommand
//! fails, 2 for bad command-line syntax (clap exits with 2 itself).

mod address;
mod check_config;
mod drain;
pub mod miredo;
mod status;

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};

pub use address::AddressArgs;
pub use check_config::CheckConfigArgs;
pub use drain::DrainArgs;
pub use status::StatusArgs;

/// Exit status of a successful subcommand.
pub const EXIT_OK: u8 = 0;
/// Exit status of a failed subcommand.
pub const EXIT_FAILURE: u8 = 1;

/// Teredo (RFC 4380) client, relay and server, reading Miredo's configuration files.
#[derive(Debug, Parser)]
#[command(name = "teredo", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a Miredo configuration file, without using the network.
    ///
    /// Checks miredo.conf (a client or relay), or miredo-server.conf with --server. Every
    /// problem, warning or error, is printed to standard error as FILE:LINE: message and
    /// makes the check fail (exit status 1), as with miredo-checkconf. A clean file prints
    /// FILE: OK.
    CheckConfig(CheckConfigArgs),
    /// Decode a Teredo IPv6 address.
    ///
    /// Prints the prefix, the server IPv4 address, the flags (RFC 5991 §3.1: C, z,
    /// Random1, U, G, Random2), and the client's mapped port and IPv4 address, de-obfuscated
    /// (RFC 4380 §4).
    Address(AddressArgs),
    /// Run a Teredo server (RFC 4380 §5.3), like miredo-server.
    ///
    /// Reads miredo-server.conf (ServerBindAddress, ServerBindAddress2, Prefix,
    /// InterfaceMTU, SyslogFacility), binds UDP port 3544 on both addresses, then drops root
    /// for the unprivileged user. Detaches unless -f is given.
    Server(crate::daemon::server::ServerArgs),
    /// Run a Teredo client or relay (RFC 4380 §5.2, §5.4), like miredo.
    ///
    /// Reads miredo.conf: RelayType client (the default) qualifies with ServerAddress and
    /// configures the tunnel interface with the Teredo address; RelayType cone or
    /// restricted runs a relay for Prefix (2001::/32). Detaches unless -f is given; the
    /// packet path runs as the unprivileged user.
    Run(crate::daemon::run::RunArgs),
    /// Show the teredo daemons of this network namespace.
    ///
    /// Asks every teredo daemon (client, relay or server) of the network namespace it runs
    /// in for its state, address, mapping, NAT, peers and counters, through its control
    /// socket (only root and the daemon's own user may). Exit status 1 when none answers.
    Status(StatusArgs),
    /// Withdraw the route of every relay of this network namespace, for maintenance.
    ///
    /// The relay deletes its route to the served prefix (2001::/32), so that the routing
    /// daemon that exports it (BIRD, FRR) stops announcing this relay, while it keeps
    /// serving the flows that still arrive; `teredo status` then says "drained". Lasts
    /// until `teredo undrain` or a restart. Exit status 1 when no relay answers.
    Drain(DrainArgs),
    /// Put back the route of every drained relay of this network namespace.
    ///
    /// The route returns as soon as the relay is healthy (its packet path runs and, when it
    /// probes servers, one of them answers). Exit status 1 when no relay answers.
    Undrain(DrainArgs),
}

/// Runs the whole command line `args` (`argv[0]` first, which chooses the entry point, see
/// [`miredo`]) and returns the exit status. A bad command line exits the process with 2,
/// `--help` and `--version` with 0 (clap).
pub fn main(args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match args.first().map_or(miredo::EntryPoint::Teredo, |a| miredo::EntryPoint::from_argv0(a)) {
        miredo::EntryPoint::Teredo => run(&Cli::parse_from(args), out, err),
        entry => miredo::run(entry, args, out, err),
    }
}

/// Runs the subcommand, writing results to `out` and problems to `err`, and returns the
/// exit status. A failure to write (a closed pipe, say) is a failure too.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = match &cli.command {
        Command::CheckConfig(args) => check_config::run(args, out, err),
        Command::Address(args) => address::run(args, out, err),
        Command::Server(args) => Ok(crate::daemon::server::run(args)),
        Command::Run(args) => Ok(crate::daemon::run::run(args)),
        Command::Status(args) => status::run(args, out, err),
        Command::Drain(args) => drain::run(args, true, out, err),
        Command::Undrain(args) => drain::run(args, false, out, err),
    };
    result.unwrap_or(EXIT_FAILURE)
}
