//! [`LogLevel`]: the value of `LogLevel` (teredo), the least severe messages logged.

use core::str::FromStr;

use super::value::ValueError;

/// The least severe messages logged; the default is `info` (one line per state change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warning,
    /// Also state changes (the default).
    #[default]
    Info,
    /// Also details for debugging.
    Debug,
}

impl FromStr for LogLevel {
    type Err = ValueError;
    /// `error`, `warning` (or `warn`), `info` (or `notice`), `debug`; any case.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.to_ascii_lowercase().as_str() {
            "error" | "err" => Ok(Self::Error),
            "warning" | "warn" => Ok(Self::Warning),
            "info" | "notice" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            _ => Err(ValueError::LogLevel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!("WARNING".parse(), Ok(LogLevel::Warning));
        assert_eq!("notice".parse(), Ok(LogLevel::Info));
        assert_eq!("verbose".parse::<LogLevel>(), Err(ValueError::LogLevel));
    }
}
