//! [`RelayType`]: the role a `miredo.conf` asks for (miredo-facts §1.5): a Teredo client
//! (RFC 4380 §5.2) or a Teredo relay (RFC 4380 §5.4).

use core::fmt;
use core::str::FromStr;

use super::value::ValueError;

/// The value of `RelayType`. The names are case-insensitive; `autoclient` is an alias of
/// `client` and `relay` an alias of `cone`, as in Miredo 1.2.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RelayType {
    /// A Teredo client (`client`, `autoclient`), the default.
    #[default]
    Client,
    /// A relay that accepts packets from any Teredo peer's mapping (`cone`, `relay`).
    Cone,
    /// A relay that sends bubbles first, as behind a restricted NAT (`restricted`).
    /// Deprecated by Miredo, which warns about it.
    Restricted,
}

impl RelayType {
    /// True for the client.
    pub fn is_client(self) -> bool {
        self == Self::Client
    }

    /// True for either kind of relay.
    pub fn is_relay(self) -> bool {
        !self.is_client()
    }
}

impl FromStr for RelayType {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const NAMES: [(&str, RelayType); 5] = [
            ("client", RelayType::Client),
            ("autoclient", RelayType::Client),
            ("cone", RelayType::Cone),
            ("relay", RelayType::Cone),
            ("restricted", RelayType::Restricted),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, t)| t)
            .ok_or(ValueError::RelayType)
    }
}

impl fmt::Display for RelayType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Cone => "cone",
            Self::Restricted => "restricted",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        assert_eq!("client".parse(), Ok(RelayType::Client));
        assert_eq!("AutoClient".parse(), Ok(RelayType::Client));
        assert_eq!("CONE".parse(), Ok(RelayType::Cone));
        assert_eq!("relay".parse(), Ok(RelayType::Cone));
        assert_eq!("Restricted".parse(), Ok(RelayType::Restricted));
        assert_eq!("server".parse::<RelayType>(), Err(ValueError::RelayType));
        assert_eq!("disabled".parse::<RelayType>(), Err(ValueError::RelayType));
        assert!(RelayType::Cone.is_relay() && !RelayType::Cone.is_client());
        assert_eq!(RelayType::default().to_string(), "client");
    }
}
