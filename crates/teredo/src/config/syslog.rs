//! [`SyslogFacility`]: the value of `SyslogFacility` (miredo-facts §1.5, §1.6), with the
//! facility codes of RFC 5424 §6.2.1.

use core::fmt;
use core::str::FromStr;

use super::value::ValueError;

/// A syslog facility. Names are case-insensitive; the default is `daemon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(missing_docs)] // The variants are the facility names.
pub enum SyslogFacility {
    Kern,
    User,
    Mail,
    #[default]
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

/// Every facility with its name and RFC 5424 code, in code order.
const FACILITIES: [(SyslogFacility, &str, u8); 20] = [
    (SyslogFacility::Kern, "kern", 0),
    (SyslogFacility::User, "user", 1),
    (SyslogFacility::Mail, "mail", 2),
    (SyslogFacility::Daemon, "daemon", 3),
    (SyslogFacility::Auth, "auth", 4),
    (SyslogFacility::Syslog, "syslog", 5),
    (SyslogFacility::Lpr, "lpr", 6),
    (SyslogFacility::News, "news", 7),
    (SyslogFacility::Uucp, "uucp", 8),
    (SyslogFacility::Cron, "cron", 9),
    (SyslogFacility::Authpriv, "authpriv", 10),
    (SyslogFacility::Ftp, "ftp", 11),
    (SyslogFacility::Local0, "local0", 16),
    (SyslogFacility::Local1, "local1", 17),
    (SyslogFacility::Local2, "local2", 18),
    (SyslogFacility::Local3, "local3", 19),
    (SyslogFacility::Local4, "local4", 20),
    (SyslogFacility::Local5, "local5", 21),
    (SyslogFacility::Local6, "local6", 22),
    (SyslogFacility::Local7, "local7", 23),
];

impl SyslogFacility {
    fn entry(self) -> (Self, &'static str, u8) {
        FACILITIES.into_iter().find(|&(f, _, _)| f == self).unwrap_or((Self::Daemon, "daemon", 3))
    }

    /// The lower-case name, as in `syslog.conf`.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The facility code of RFC 5424 §6.2.1 (multiply by 8 for the C `LOG_*` value).
    pub fn code(self) -> u8 {
        self.entry().2
    }
}

impl FromStr for SyslogFacility {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FACILITIES
            .into_iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(s))
            .map(|(f, _, _)| f)
            .ok_or(ValueError::SyslogFacility)
    }
}

impl fmt::Display for SyslogFacility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (f, name, code) in FACILITIES {
            assert_eq!(name.parse(), Ok(f));
            assert_eq!(name.to_uppercase().parse(), Ok(f));
            assert_eq!(f.name(), name);
            assert_eq!(f.code(), code);
        }
        assert_eq!(SyslogFacility::default(), SyslogFacility::Daemon);
        assert_eq!("local8".parse::<SyslogFacility>(), Err(ValueError::SyslogFacility));
    }
}
