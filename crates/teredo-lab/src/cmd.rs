//! Running external programs (`ip`, `nft`, `conntrack`, `tcpdump`, daemons) on the host
//! or inside a namespace, turning every failure into a [`LabError`] that names the
//! command, the namespace and the program's stderr.

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::error::{LabError, Result};

/// The name used in errors for the machine's own (root) namespace.
pub(crate) const HOST: &str = "host";

/// A `Command` that runs `program` inside namespace `ns` (`ip netns exec`).
pub(crate) fn in_ns(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program).stdin(Stdio::null());
    c
}

/// A `Command` for `program` on the host.
pub(crate) fn on_host(program: &str) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null());
    c
}

/// The command line of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion and returns its output, whatever its exit status.
pub(crate) fn output(cmd: &mut Command, ns: &str) -> Result<Output> {
    cmd.output().map_err(|source| LabError::Spawn { cmd: describe(cmd), ns: ns.to_owned(), source })
}

/// Runs `cmd` and returns its stdout; a non-zero exit is an error carrying stderr.
pub(crate) fn checked(cmd: &mut Command, ns: &str) -> Result<String> {
    let out = output(cmd, ns)?;
    check(cmd, ns, out)
}

/// Runs `cmd` with `input` on its stdin and returns its stdout (non-zero exit is an error).
pub(crate) fn checked_with_stdin(cmd: &mut Command, ns: &str, input: &str) -> Result<String> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let line = describe(cmd);
    let mut child =
        cmd.spawn().map_err(|source| LabError::Spawn { cmd: line.clone(), ns: ns.to_owned(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| LabError::io(format!("writing stdin of `{line}`"), e))?;
    }
    let out = child.wait_with_output().map_err(|e| LabError::io(format!("waiting for `{line}`"), e))?;
    check(cmd, ns, out)
}

fn check(cmd: &Command, ns: &str, out: Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            cmd: describe(cmd),
            ns: ns.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip ARGS` on the host.
pub(crate) fn ip(args: &[&str]) -> Result<String> {
    checked(on_host("ip").args(args), HOST)
}

/// Whether `program` can be found in the usual places (PATH, /usr/sbin, /sbin).
pub(crate) fn have_program(program: &str) -> bool {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into));
    dirs.iter().any(|d| d.join(program).is_file())
}
