//! The `teredo` executable: parses the command line and runs the subcommand
//! (see `teredo::cli`). Exit status 0 on success, 1 on failure, 2 for bad usage.

use std::io;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = teredo::cli::Cli::parse();
    // Not locked: the daemons log to stderr from several threads.
    let status = teredo::cli::run(&cli, &mut io::stdout(), &mut io::stderr());
    ExitCode::from(status)
}
