//! Reading a configuration file from disk: the only I/O of the configuration module.
//! Everything else is in the pure `parse_*` functions.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::Parsed;
use super::client::{ClientRelayConfig, ClientRelayOverrides, parse_client_relay_bytes};
use super::server::{ServerConfig, ServerOverrides, parse_server_bytes};

/// The largest configuration file read, in bytes. Miredo's files are a few kilobytes; the
/// limit keeps a mistaken path (`/dev/zero`, a log file) from exhausting memory.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// A configuration file that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Opening or reading failed.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file, as given.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("{path}: cannot read: larger than {MAX_FILE_SIZE} bytes")]
    TooLarge {
        /// The file, as given.
        path: String,
    },
}

/// Reads and checks a `miredo.conf`. Diagnostics name the file as `path` displays.
///
/// A daemon started with a server on its command line may treat a [`LoadError`] as an
/// empty file, as Miredo does (miredo-facts §1.2).
pub fn load_client_relay(
    path: &Path,
    overrides: &ClientRelayOverrides,
) -> Result<Parsed<ClientRelayConfig>, LoadError> {
    let name = path.display().to_string();
    let text = read(path, &name)?;
    Ok(parse_client_relay_bytes(&text, &name, overrides))
}

/// Reads and checks a `miredo-server.conf`. Diagnostics name the file as `path` displays.
pub fn load_server(path: &Path, overrides: &ServerOverrides) -> Result<Parsed<ServerConfig>, LoadError> {
    let name = path.display().to_string();
    let text = read(path, &name)?;
    Ok(parse_server_bytes(&text, &name, overrides))
}

/// Reads and checks the key file of `ClientKeys` ([`super::parse_client_keys`]).
pub fn load_client_keys(path: &Path) -> Result<Parsed<Vec<super::ClientKey>>, LoadError> {
    let name = path.display().to_string();
    let text = read(path, &name)?;
    Ok(super::parse_client_keys(&text, &name))
}

fn read(path: &Path, name: &str) -> Result<Vec<u8>, LoadError> {
    let read_error = |source| LoadError::Read { path: name.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    let mut text = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut text).map_err(read_error)?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(LoadError::TooLarge { path: name.to_owned() });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_it() {
        let e = load_server(Path::new("/nonexistent/x.conf"), &ServerOverrides::default()).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/x.conf: cannot read: No such file or directory (os error 2)");
    }

    #[test]
    fn directory_is_unreadable() {
        let e = load_client_relay(Path::new("/"), &ClientRelayOverrides::default()).unwrap_err();
        assert!(e.to_string().starts_with("/: cannot read: "), "{e}");
    }
}
