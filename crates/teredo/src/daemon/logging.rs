//! Logging for the daemons through `tracing`: to standard error in the foreground (`-f`),
//! to the journal under systemd (standard error is the journal's stream, `JOURNAL_STREAM`:
//! each line carries its priority as `<N>`), to syslog with Miredo's `SyslogFacility` when
//! detached. One line per state change, never per packet at the default level. The level
//! (`LogLevel`) can be changed by a reload.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use teredo_net::syslog::{self, Priority};
use tracing::Level;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, reload};

use crate::config::LogLevel;

/// Where the logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Standard error, with times.
    Stderr,
    /// Standard error read by journald: `<N>` priority prefixes, no times.
    Journal,
    /// syslog(3) with this facility code (RFC 5424 numbering) and identity.
    Syslog {
        /// The facility number.
        facility: u8,
        /// The identity, e.g. "teredo-server".
        ident: &'static str,
    },
}

impl Target {
    /// The foreground's target: the journal when standard error is the stream systemd
    /// named in `JOURNAL_STREAM` (`DEVICE:INODE`), else plain standard error.
    pub fn foreground() -> Self {
        if stderr_is_journal() { Self::Journal } else { Self::Stderr }
    }
}

fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else { return false };
    let Ok(m) = std::fs::File::from(fd).metadata() else { return false };
    use std::os::unix::fs::MetadataExt;
    dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino())
}

static LEVEL: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warning => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    }
}

/// Installs the global logger (once per process; later calls only set the level).
pub fn init(target: Target, level: LogLevel) {
    if LEVEL.get().is_some() {
        return set_level(level);
    }
    let (layer, handle) = reload::Layer::new(filter(level));
    if LEVEL.set(handle).is_err() {
        return;
    }
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let _ = match target {
        Target::Stderr => {
            tracing_subscriber::registry().with(layer).with(fmt.with_writer(io::stderr)).try_init()
        }
        Target::Journal => tracing_subscriber::registry()
            .with(layer)
            .with(fmt.without_time().with_ansi(false).with_writer(Lines(target)))
            .try_init(),
        Target::Syslog { facility, ident } => {
            syslog::open(ident, facility);
            tracing_subscriber::registry()
                .with(layer)
                .with(fmt.without_time().with_ansi(false).with_writer(Lines(target)))
                .try_init()
        }
    };
}

/// Changes the level (a reload).
pub fn set_level(level: LogLevel) {
    if let Some(h) = LEVEL.get() {
        let _ = h.modify(|f| *f = filter(level));
    }
}

/// A writer that sends each formatted event, as one line, to the journal or syslog with
/// the event's priority.
#[derive(Clone, Copy)]
struct Lines(Target);

/// One event's text, sent when dropped.
struct Line {
    target: Target,
    priority: Priority,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        match self.target {
            Target::Syslog { .. } => syslog::log(self.priority, text),
            _ => {
                let mut e = io::stderr().lock();
                for l in text.lines() {
                    let _ = writeln!(e, "<{}>{l}", self.priority.code());
                }
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;
    fn make_writer(&'a self) -> Self::Writer {
        Line { target: self.0, priority: Priority::Info, buf: Vec::new() }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        let priority = match *meta.level() {
            Level::ERROR => Priority::Error,
            Level::WARN => Priority::Warning,
            Level::INFO => Priority::Info,
            _ => Priority::Debug,
        };
        Line { target: self.0, priority, buf: Vec::new() }
    }
}
