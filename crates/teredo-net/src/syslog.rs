//! syslog(3): the log destination of a detached daemon, with Miredo's `SyslogFacility`.

use std::ffi::CString;

/// A message's priority (RFC 5424 severities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// LOG_ERR.
    Error,
    /// LOG_WARNING.
    Warning,
    /// LOG_INFO.
    Info,
    /// LOG_DEBUG.
    Debug,
}

impl Priority {
    /// The severity number (also the `<N>` prefix journald reads on standard error).
    pub fn code(self) -> i32 {
        match self {
            Self::Error => libc::LOG_ERR,
            Self::Warning => libc::LOG_WARNING,
            Self::Info => libc::LOG_INFO,
            Self::Debug => libc::LOG_DEBUG,
        }
    }
}

/// Opens the process's connection to syslog with `ident` and the facility numbered
/// `facility` (RFC 5424 numbering). Call once: openlog keeps the identity's pointer, so it
/// is kept for the life of the process.
pub fn open(ident: &str, facility: u8) {
    let ident = Box::leak(CString::new(ident.replace('\0', " ")).unwrap_or_default().into_boxed_c_str());
    // SAFETY: a NUL-terminated string that is never freed.
    unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID | libc::LOG_NDELAY, i32::from(facility) << 3) };
}

/// Sends one message at `priority`.
pub fn log(priority: Priority, text: &str) {
    if let Ok(c) = CString::new(text.replace('\0', " ")) {
        // SAFETY: a constant format string with one NUL-terminated argument.
        unsafe { libc::syslog(priority.code(), c"%s".as_ptr(), c.as_ptr()) };
    }
}
