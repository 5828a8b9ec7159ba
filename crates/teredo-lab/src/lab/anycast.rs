//! The anycast part of a lab: relays that announce 2001::/32 to the "internet" router by
//! BGP instead of the router's static route ([`Lab::anycast_relay`]), and Teredo servers
//! that own the same address pair behind an ECMP route of the router
//! ([`Lab::ecmp_server`]).
//!
//! | node | interface | IPv4 | IPv6 | router side (in `inet`) |
//! |---|---|---|---|---|
//! | anycast relay *k* (1..=2) | eth0 | 192.0.2.(16*k*+1)/28 | 2001:db8:(10+*k*)::1/64 | `ar`*k* 192.0.2.(16*k*+14), 2001:db8:(10+*k*)::ff |
//! | ECMP server *j* (1..=2) | eth0 | 192.0.2.(32+16*j*+1)/28 | 2001:db8:(20+*j*)::1/64 | `es`*j* 192.0.2.(32+16*j*+14), 2001:db8:(20+*j*)::ff |
//! | ECMP server *j* | lo | 192.0.2.1/32, 192.0.2.2/32 (the server pair) | | |
//!
//! An anycast lab has no [`Lab::relay`] and no [`Lab::server`] of the plain kind when it
//! uses the same roles: the addresses would clash.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Lab;
use super::hosts::{ETH, Relay, SERVER_IPV4, SERVER_IPV4_2, Server};
use crate::error::{LabError, Result};

/// How many anycast relays, and how many ECMP servers, one lab can have.
pub const MAX_ANYCAST: u8 = 2;

impl Lab {
    /// A new relay without the router's static route: it is reached through the routes
    /// BGP gives the router (see [`crate::bird`]). IPv6 forwarding on. Relay *k* (1 or 2)
    /// has 192.0.2.(16*k*+1)/28 and 2001:db8:(10+*k*)::1/64 on `eth0`, the router
    /// 192.0.2.(16*k*+14) and 2001:db8:(10+*k*)::ff on `ar`*k*.
    pub fn anycast_relay(&mut self) -> Result<Relay> {
        let k = u8::try_from(self.anycast.len() + 1)
            .ok()
            .filter(|k| *k <= MAX_ANYCAST)
            .ok_or_else(|| LabError::Invalid(format!("at most {MAX_ANYCAST} anycast relays")))?;
        let (node, ipv4) =
            self.transfer_host(&format!("relay{k}"), &format!("ar{k}"), 16 * k, 0x10 + u16::from(k))?;
        node.sysctl(&[("net.ipv6.conf.all.forwarding", "1")])?;
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0x10 + u16::from(k), 0, 0, 0, 0, 1);
        let r = Relay { node, ipv4, ipv6 };
        self.anycast.push(r.clone());
        Ok(r)
    }

    /// A new Teredo server host owning the server pair ([`SERVER_IPV4`], [`SERVER_IPV4_2`])
    /// on its loopback, behind the router, which reaches the pair through an ECMP route
    /// over every ECMP server made so far (nexthop objects, hashed on the UDP ports:
    /// `fib_multipath_hash_policy=1`). A nexthop whose link goes down leaves the group.
    /// Server *j* (1 or 2) has 192.0.2.(32+16*j*+1)/28 and 2001:db8:(20+*j*)::1/64 on
    /// `eth0`, the router 192.0.2.(32+16*j*+14) and 2001:db8:(20+*j*)::ff on `es`*j*.
    pub fn ecmp_server(&mut self) -> Result<Server> {
        let j = u8::try_from(self.ecmp.len() + 1)
            .ok()
            .filter(|j| *j <= MAX_ANYCAST)
            .ok_or_else(|| LabError::Invalid(format!("at most {MAX_ANYCAST} ECMP servers")))?;
        let inet_if = format!("es{j}");
        let (node, own) =
            self.transfer_host(&format!("server{j}"), &inet_if, 32 + 16 * j, 0x20 + u16::from(j))?;
        for a in [SERVER_IPV4, SERVER_IPV4_2] {
            node.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"])?;
        }
        self.inet.sysctl(&[("net.ipv4.fib_multipath_hash_policy", "1")])?;
        self.inet.ip(&["nexthop", "add", "id", &j.to_string(), "via", &own.to_string(), "dev", &inet_if])?;
        let group: Vec<String> = (1..=j).map(|i| i.to_string()).collect();
        let group = group.join("/");
        let verb = if j == 1 { "add" } else { "replace" };
        self.inet.ip(&["nexthop", verb, "id", "100", "group", &group])?;
        for a in [SERVER_IPV4, SERVER_IPV4_2] {
            self.inet.ip(&["route", "replace", &format!("{a}/32"), "nhid", "100"])?;
        }
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0x20 + u16::from(j), 0, 0, 0, 0, 1);
        let s = Server { node, primary: SERVER_IPV4, secondary: SERVER_IPV4_2, ipv6 };
        self.ecmp.push(s.clone());
        Ok(s)
    }

    /// A node `role` on its own /28 of 192.0.2.0/24 starting at `.base` (its address
    /// `.base+1` on `eth0`, the router `.base+14` on `inet_if`, its default route through
    /// it), with 2001:db8:`v6net`::/64 on the same link, and the automatic capture.
    fn transfer_host(
        &mut self,
        role: &str,
        inet_if: &str,
        base: u8,
        v6net: u16,
    ) -> Result<(crate::node::Node, Ipv4Addr)> {
        let node = self.add_node(role)?;
        self.link(&node, ETH, &self.inet, inet_if)?;
        let own = Ipv4Addr::new(192, 0, 2, base + 1);
        let gw = Ipv4Addr::new(192, 0, 2, base + 14);
        node.ip(&["addr", "add", &format!("{own}/28"), "dev", ETH])?;
        node.ip(&["route", "add", "default", "via", &gw.to_string()])?;
        self.inet.ip(&["addr", "add", &format!("{gw}/28"), "dev", inet_if])?;
        self.v6_link(&node, inet_if, v6net)?;
        self.auto_capture(&node, ETH)?;
        Ok((node, own))
    }
}
