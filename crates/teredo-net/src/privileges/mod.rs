//! Dropping root once the sockets are open, so that the packet path never runs
//! privileged (Miredo does the same, miredo-facts §2): look the user up, refuse uid 0,
//! optionally chroot, drop supplementary groups, switch gid and uid; on Linux also empty
//! every capability set (bounding set included) and forbid regaining privileges
//! (PR_SET_NO_NEW_PRIVS). Afterwards the process is checked: any capability left, or a
//! zero uid, is an error. The user and id part is portable (POSIX); capabilities are
//! Linux's.

use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;

#[cfg(target_os = "linux")]
mod caps;
#[cfg(target_os = "linux")]
pub use caps::{CAP_NET_ADMIN, capabilities, drop_to_net_admin, set_capabilities};

/// An unprivileged account to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The account name.
    pub name: String,
    /// Its uid.
    pub uid: libc::uid_t,
    /// Its primary gid.
    pub gid: libc::gid_t,
}

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user.
    #[error("unknown user \"{0}\"")]
    UnknownUser(String),
    /// The user is root.
    #[error("user \"{0}\" has uid 0: refusing to run the packet path as root")]
    RootUser(String),
    /// A system call failed.
    #[error("{call}: {source}")]
    Call {
        /// Which call.
        call: &'static str,
        /// The error.
        source: io::Error,
    },
    /// Something is left after dropping.
    #[error("privileges still held after dropping them: {0}")]
    StillPrivileged(String),
}

pub(crate) fn check(call: &'static str, r: libc::c_int) -> Result<(), PrivilegeError> {
    if r == 0 { Ok(()) } else { Err(PrivilegeError::Call { call, source: io::Error::last_os_error() }) }
}

/// Looks up `name` in the user database.
pub fn lookup_user(name: &str) -> Result<User, PrivilegeError> {
    let c = CString::new(name).map_err(|_| PrivilegeError::UnknownUser(name.to_owned()))?;
    // SAFETY: passwd is plain old data; getpwnam_r fills it with pointers into buf.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the duration of the call.
    let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() {
        return Err(PrivilegeError::UnknownUser(name.to_owned()));
    }
    // SAFETY: pw_name points into buf, NUL-terminated, while buf lives.
    let pname = unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned();
    Ok(User { name: pname, uid: pw.pw_uid, gid: pw.pw_gid })
}

/// Drops to `user` for good, chrooting into `chroot` first if given. Must be called
/// before any other thread is started. RFC-independent; miredo-facts §2.1. On Linux every
/// capability set is emptied too and PR_SET_NO_NEW_PRIVS set.
pub fn drop_privileges(user: &User, chroot: Option<&Path>) -> Result<(), PrivilegeError> {
    if user.uid == 0 {
        return Err(PrivilegeError::RootUser(user.name.clone()));
    }
    #[cfg(target_os = "linux")]
    caps::before_drop()?;
    if let Some(dir) = chroot {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| PrivilegeError::Call {
            call: "chroot",
            source: io::ErrorKind::InvalidInput.into(),
        })?;
        // SAFETY: a valid NUL-terminated path.
        check("chroot", unsafe { libc::chroot(c.as_ptr()) })?;
        check("chdir(\"/\")", unsafe { libc::chdir(c"/".as_ptr()) })?;
    }
    set_ids(user)?;
    #[cfg(target_os = "linux")]
    caps::after_drop()?;
    verify_unprivileged()
}

/// The supplementary groups, then the gid, then the uid: real, effective and saved.
pub(crate) fn set_ids(user: &User) -> Result<(), PrivilegeError> {
    // SAFETY: plain system calls with integer or array arguments.
    unsafe {
        check("setgroups", libc::setgroups(1, &user.gid))?;
        #[cfg(target_os = "linux")]
        {
            check("setresgid", libc::setresgid(user.gid, user.gid, user.gid))?;
            check("setresuid", libc::setresuid(user.uid, user.uid, user.uid))?;
        }
        // As root, setgid and setuid set the real, effective and saved ids (POSIX).
        #[cfg(not(target_os = "linux"))]
        {
            check("setgid", libc::setgid(user.gid))?;
            check("setuid", libc::setuid(user.uid))?;
        }
    }
    Ok(())
}

/// Checks that this process is not root (and, on Linux, holds no capability).
pub fn verify_unprivileged() -> Result<(), PrivilegeError> {
    // SAFETY: getuid/geteuid cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid == 0 || euid == 0 {
        return Err(PrivilegeError::StillPrivileged(format!("uid {uid}, euid {euid}")));
    }
    #[cfg(target_os = "linux")]
    caps::verify_none()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        let root = lookup_user("root").unwrap();
        assert_eq!(root.uid, 0);
        assert!(matches!(lookup_user("no-such-user-teredo"), Err(PrivilegeError::UnknownUser(_))));
        assert!(matches!(drop_privileges(&root, None), Err(PrivilegeError::RootUser(_))));
    }

    #[test]
    fn drop_in_a_child() {
        // Dropping is irreversible, so it happens in a forked child that reports back.
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            assert!(!crate::under_ci(), "needs root, which CI=true requires");
            eprintln!("SKIP: not root");
            return;
        }
        let nobody = lookup_user("nobody").unwrap();
        // SAFETY: the child only calls async-signal-safe code paths before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = match drop_privileges(&nobody, None) {
                Ok(()) if capabilities().map(|c| c == [0; 3]).unwrap_or(false) => 0,
                _ => 1,
            };
            // SAFETY: end the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status}");
    }
}
