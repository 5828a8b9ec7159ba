//! Logging for the daemons through `tracing`: to standard error in the foreground, to
//! syslog with Miredo's `SyslogFacility` when detached. One line per state change, never
//! per packet at the default level.

use std::ffi::CString;
use std::io::{self, Write};
use std::sync::Once;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// Where the logs go.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Standard error.
    Stderr,
    /// syslog(3) with this facility code (RFC 5424 numbering) and identity.
    Syslog {
        /// The facility number.
        facility: u8,
        /// The identity, e.g. "teredo-server".
        ident: &'static str,
    },
}

static INIT: Once = Once::new();

/// Installs the global logger (once per process). `verbose` adds debug messages.
pub fn init(target: Target, verbose: bool) {
    INIT.call_once(|| {
        let level = if verbose { Level::DEBUG } else { Level::INFO };
        match target {
            Target::Stderr => {
                let _ = tracing_subscriber::fmt()
                    .with_max_level(level)
                    .with_writer(io::stderr)
                    .with_target(false)
                    .try_init();
            }
            Target::Syslog { facility, ident } => {
                // openlog keeps the pointer: the identity must live for the process.
                let ident = Box::leak(CString::new(ident).unwrap_or_default().into_boxed_c_str());
                // SAFETY: a NUL-terminated string that is never freed.
                unsafe {
                    libc::openlog(ident.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, i32::from(facility) << 3)
                };
                let _ = tracing_subscriber::fmt()
                    .with_max_level(level)
                    .with_writer(Syslog)
                    .with_target(false)
                    .without_time()
                    .with_ansi(false)
                    .try_init();
            }
        }
    });
}

/// A writer that sends each formatted event to syslog at the event's level.
#[derive(Clone, Copy)]
struct Syslog;

struct SyslogLine {
    priority: libc::c_int,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if let Ok(c) = CString::new(text.replace('\0', " ")) {
            // SAFETY: a constant format string with one NUL-terminated argument.
            unsafe { libc::syslog(self.priority, c"%s".as_ptr(), c.as_ptr()) };
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;
    fn make_writer(&'a self) -> Self::Writer {
        SyslogLine { priority: libc::LOG_INFO, buf: Vec::new() }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogLine { priority, buf: Vec::new() }
    }
}
