//! Shell completions of `teredo` (its subcommands, options and their values), generated
//! by clap_complete from [`teredo::cli::Cli`], at the paths where Debian's bash-completion,
//! zsh and fish look for them.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::DistFile;

/// The bash, zsh and fish scripts.
pub fn scripts() -> std::io::Result<Vec<DistFile>> {
    let mut files = Vec::new();
    for (shell, path) in [
        (Shell::Bash, "bash-completion/completions/teredo"),
        (Shell::Zsh, "zsh/vendor-completions/_teredo"),
        (Shell::Fish, "fish/vendor_completions.d/teredo.fish"),
    ] {
        let mut contents = Vec::new();
        clap_complete::generate(shell, &mut teredo::cli::Cli::command(), "teredo", &mut contents);
        files.push(DistFile { path: PathBuf::from(path), contents });
    }
    Ok(files)
}
