//! `teredo drain` and `teredo undrain`: take every relay of this network namespace out of
//! the routing (its route to the served prefix withdrawn, so that BGP stops announcing
//! it) for maintenance, while it keeps serving the flows that still arrive, and put it
//! back; through the relays' control sockets (`teredo_net::control`). The daemons that are
//! not relays are left alone.

use std::io::{self, Write};

use clap::Args;
use serde_json::Value;

use super::status::{ask, ask_all, health};
use super::{EXIT_FAILURE, EXIT_OK};

/// `teredo drain` / `teredo undrain` options.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// Print a JSON array, one object per relay.
    #[arg(long)]
    pub json: bool,
}

/// Runs `teredo drain` (`drain` true) or `teredo undrain`.
pub(super) fn run(args: &DrainArgs, drain: bool, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let word = if drain { "drain" } else { "undrain" };
    let who = format!("teredo {word}");
    let one = |pid: u32| -> Option<Result<Value, String>> {
        // Only relays: asking a client or a server would only earn an error.
        match ask(pid, "status") {
            Ok(v) if v.get("role").and_then(Value::as_str) == Some("relay") => {}
            Ok(_) => return None,
            Err(e) => return Some(Err(e)),
        }
        Some(ask(pid, word).map(|mut v| {
            if let Value::Object(o) = &mut v {
                o.insert("pid".into(), Value::from(pid));
            }
            v
        }))
    };
    let Some(done) = ask_all(&who, "relay", err, one)? else {
        return Ok(EXIT_FAILURE);
    };
    if args.json {
        writeln!(out, "{}", Value::Array(done))?;
    } else {
        for v in &done {
            writeln!(
                out,
                "teredo relay (pid {}): {}",
                v["pid"],
                v.get("health").map_or_else(String::new, health)
            )?;
        }
    }
    Ok(EXIT_OK)
}
