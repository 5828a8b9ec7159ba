//! The `teredo` executable: parses the command line and runs the subcommand
//! (see `teredo::cli`); started as `miredo`, `miredo-server` or `miredo-checkconf` (a
//! symbolic link), it takes that program's command line instead (`teredo::cli::miredo`).
//! Exit status 0 on success, 1 on failure, 2 for bad usage.

use std::io;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Not locked: the daemons log to stderr from several threads.
    let status = teredo::cli::main(std::env::args_os().collect(), &mut io::stdout(), &mut io::stderr());
    ExitCode::from(status)
}
