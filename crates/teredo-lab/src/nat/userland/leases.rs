//! `miniupnpd`'s lease file, which it rewrites on every AddPortMapping and
//! DeletePortMapping: the UPnP port mappings in force, one per line,
//! `PROTO:EXTERNAL_PORT:INTERNAL_ADDRESS:INTERNAL_PORT:EXPIRY:DESCRIPTION` (expiry in Unix
//! seconds, 0 for none).

use std::net::{Ipv4Addr, SocketAddrV4};

use super::table::UpnpMapping;

/// The UDP mappings of a lease file's text that have not expired at Unix time `now`;
/// lines that do not parse are skipped.
pub(crate) fn parse(text: &str, now: u64) -> Vec<UpnpMapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().splitn(6, ':');
            let proto = f.next()?;
            let external_port: u16 = f.next()?.parse().ok()?;
            let addr: Ipv4Addr = f.next()?.parse().ok()?;
            let port: u16 = f.next()?.parse().ok()?;
            let expiry: u64 = f.next()?.parse().ok()?;
            let live = expiry == 0 || expiry > now;
            (proto.eq_ignore_ascii_case("udp") && external_port != 0 && live)
                .then_some(UpnpMapping { external_port, internal: SocketAddrV4::new(addr, port) })
        })
        .collect()
}

/// The current Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_miniupnpd_lines() {
        let text = "UDP:41000:10.0.1.2:40000:1796771450:test\n\
                    TCP:80:10.0.1.2:80:0:web\n\
                    UDP:3544:10.0.1.3:3544:0:TEREDO:with:colons\n\
                    UDP:5000:10.0.1.4:5000:100:expired\n\
                    garbage\nUDP:x:y:z:0:\n";
        let m = parse(text, 1000);
        assert_eq!(
            m,
            [
                UpnpMapping { external_port: 41000, internal: "10.0.1.2:40000".parse().unwrap() },
                UpnpMapping { external_port: 3544, internal: "10.0.1.3:3544".parse().unwrap() },
            ]
        );
    }
}
