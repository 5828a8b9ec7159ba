//! `teredo-dist DIR`: writes teredo's generated man pages and shell completions under
//! `DIR` (`DIR/man/man8/teredo.8`, `DIR/bash-completion/completions/teredo`...), as
//! `scripts/package` installs them under `/usr/share`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: teredo-dist DIR");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let files = match teredo_dist::files() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("teredo-dist: {e}");
            return ExitCode::FAILURE;
        }
    };
    for f in files {
        let path = dir.join(&f.path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &f.contents));
        if let Err(e) = written {
            eprintln!("teredo-dist: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
