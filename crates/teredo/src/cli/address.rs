//! `teredo address ADDR [--json]`: decodes a Teredo address (RFC 4380 §4) into its
//! prefix, server IPv4, flags (RFC 5991 §3.1: C, z, Random1, U, G, Random2), mapped
//! port and mapped IPv4, de-obfuscated.

use std::io::{self, Write};
use std::net::Ipv6Addr;

use clap::Args;
use serde_json::json;
use teredo_proto::address::{Prefix, TeredoAddress};

use super::{EXIT_FAILURE, EXIT_OK};

/// Arguments of `teredo address`.
#[derive(Debug, Args)]
pub struct AddressArgs {
    /// The IPv6 address to decode, under 2001::/32 or 3ffe:831f::/32.
    pub addr: String,
    /// Print one JSON object (keys: address, prefix, server, flags, cone, z, random1, u,
    /// g, random2, mapped_port, mapped_address) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(args: &AddressArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let Ok(ipv6) = args.addr.parse::<Ipv6Addr>() else {
        writeln!(err, "teredo: {:?} is not an IPv6 address", args.addr)?;
        return Ok(EXIT_FAILURE);
    };
    let Some((address, prefix)) =
        TeredoAddress::from_ipv6(&ipv6).and_then(|a| a.known_prefix().map(|p| (a, p)))
    else {
        writeln!(
            err,
            "teredo: {ipv6} is not a Teredo address: its prefix is neither {} nor {}",
            Prefix::Standard,
            Prefix::Legacy
        )?;
        return Ok(EXIT_FAILURE);
    };
    if args.json {
        write_json(out, &address, prefix)?;
    } else {
        write_text(out, &address, prefix)?;
    }
    Ok(EXIT_OK)
}

fn write_json(out: &mut dyn Write, a: &TeredoAddress, prefix: Prefix) -> io::Result<()> {
    let f = a.flags;
    let value = json!({
        "address": a.to_ipv6().to_string(),
        "prefix": prefix.to_string(),
        "server": a.server.to_string(),
        "flags": f.0,
        "cone": f.cone(),
        "z": f.z(),
        "random1": f.random1(),
        "u": f.u(),
        "g": f.g(),
        "random2": f.random2(),
        "mapped_port": a.mapped_port,
        "mapped_address": a.mapped_addr.to_string(),
    });
    writeln!(out, "{value}")
}

fn write_text(out: &mut dyn Write, a: &TeredoAddress, prefix: Prefix) -> io::Result<()> {
    let f = a.flags;
    let bit = |b: bool| u8::from(b);
    writeln!(out, "Teredo address {}", a.to_ipv6())?;
    writeln!(out, "  prefix:          {prefix}")?;
    writeln!(out, "  server:          {}", a.server)?;
    writeln!(out, "  flags:           0x{:04x}", f.0)?;
    writeln!(out, "    C (cone):      {}", bit(f.cone()))?;
    writeln!(out, "    z (reserved):  {}", bit(f.z()))?;
    writeln!(out, "    Random1:       0x{:x}", f.random1())?;
    writeln!(out, "    U:             {}", bit(f.u()))?;
    writeln!(out, "    G:             {}", bit(f.g()))?;
    writeln!(out, "    Random2:       0x{:02x}", f.random2())?;
    writeln!(out, "  mapped port:     {}", a.mapped_port)?;
    writeln!(out, "  mapped address:  {}", a.mapped_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_str(addr: &str, json: bool) -> (u8, String, String) {
        let args = AddressArgs { addr: addr.to_owned(), json };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(&args, &mut out, &mut err).unwrap();
        (status, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn text_output() {
        let (status, out, err) = run_str("2001:0:4136:e378:8000:63bf:3fff:fdd2", false);
        assert_eq!(status, 0);
        assert_eq!(err, "");
        assert_eq!(
            out,
            "Teredo address 2001:0:4136:e378:8000:63bf:3fff:fdd2\n\
             \x20 prefix:          2001::/32\n\
             \x20 server:          65.54.227.120\n\
             \x20 flags:           0x8000\n\
             \x20   C (cone):      1\n\
             \x20   z (reserved):  0\n\
             \x20   Random1:       0x0\n\
             \x20   U:             0\n\
             \x20   G:             0\n\
             \x20   Random2:       0x00\n\
             \x20 mapped port:     40000\n\
             \x20 mapped address:  192.0.2.45\n"
        );
    }

    #[test]
    fn random_bits_and_legacy_prefix() {
        let (status, out, _) = run_str("3ffe:831f:c000:201:20f3:cfc6:3fff:fd74", true);
        assert_eq!(status, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["prefix"], "3ffe:831f::/32");
        assert_eq!(v["flags"], 0x20f3);
        assert_eq!(v["random1"], 8);
        assert_eq!(v["random2"], 0xf3);
        assert_eq!(v["cone"], false);
        assert_eq!(v["mapped_port"], 12345);
        assert_eq!(v["mapped_address"], "192.0.2.139");
    }

    #[test]
    fn refusals() {
        let (status, out, err) = run_str("2001:db8::1", false);
        assert_eq!((status, out.as_str()), (1, ""));
        assert_eq!(
            err,
            "teredo: 2001:db8::1 is not a Teredo address: its prefix is neither 2001::/32 nor 3ffe:831f::/32\n"
        );
        let (status, _, err) = run_str("192.0.2.1", true);
        assert_eq!(status, 1);
        assert_eq!(err, "teredo: \"192.0.2.1\" is not an IPv6 address\n");
    }
}
