//! Reading a daemon's configuration file again on SIGHUP: what can change without new
//! privileges takes effect, what needs a restart is logged as such, and a file with an
//! error is refused with its `FILE:LINE` diagnostics while the daemon keeps running on
//! the configuration it has.

use std::path::Path;

use tracing::{error, warn};

use crate::config::{LoadError, Parsed, Severity};

/// Reads `path` with `load`, logging every diagnostic; `None` when it cannot be used.
pub fn read<T>(path: &Path, load: impl FnOnce(&Path) -> Result<Parsed<T>, LoadError>) -> Option<T> {
    let parsed = match load(path) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}: new configuration refused, keeping the running one");
            return None;
        }
    };
    for d in &parsed.diagnostics {
        match d.severity {
            Severity::Warning => warn!("{d}"),
            Severity::Error => error!("{d}"),
        }
    }
    if parsed.config.is_none() {
        error!("{}: new configuration refused, keeping the running one", path.display());
    }
    parsed.config
}

/// Logs each directive of `changed` whose value changed as needing a restart.
pub fn needs_restart(path: &Path, changed: &[(&str, bool)]) {
    for (name, _) in changed.iter().filter(|(_, c)| *c) {
        warn!("{}: changed, but it takes a restart of teredo to apply it", super::locate(path, name));
    }
}
