//! Dropping root once the sockets are open, so that the packet path never runs
//! privileged (Miredo does the same, miredo-facts §2): look the user up, refuse uid 0,
//! optionally chroot, drop supplementary groups, switch gid and uid, empty every
//! capability set (bounding set included) and forbid regaining privileges
//! (PR_SET_NO_NEW_PRIVS). Afterwards the process is checked: any capability left, or a
//! zero uid, is an error.

use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;

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

fn check(call: &'static str, r: libc::c_int) -> Result<(), PrivilegeError> {
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
/// before any other thread is started. RFC-independent; miredo-facts §2.1.
pub fn drop_privileges(user: &User, chroot: Option<&Path>) -> Result<(), PrivilegeError> {
    if user.uid == 0 {
        return Err(PrivilegeError::RootUser(user.name.clone()));
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        check("prctl(PR_SET_KEEPCAPS)", libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
        // Empty the bounding set while we still hold CAP_SETPCAP; EINVAL marks the end of
        // the capabilities this kernel knows.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
            {
                break;
            }
        }
        let _ = libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    }
    if let Some(dir) = chroot {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| PrivilegeError::Call {
            call: "chroot",
            source: io::ErrorKind::InvalidInput.into(),
        })?;
        // SAFETY: a valid NUL-terminated path.
        check("chroot", unsafe { libc::chroot(c.as_ptr()) })?;
        check("chdir(\"/\")", unsafe { libc::chdir(c"/".as_ptr()) })?;
    }
    // SAFETY: plain system calls with integer or array arguments.
    unsafe {
        check("setgroups", libc::setgroups(1, &user.gid))?;
        check("setresgid", libc::setresgid(user.gid, user.gid, user.gid))?;
        check("setresuid", libc::setresuid(user.uid, user.uid, user.uid))?;
        check("prctl(PR_SET_NO_NEW_PRIVS)", libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    verify_unprivileged()
}

/// CAP_NET_ADMIN, the one capability the privileged helper keeps.
pub const CAP_NET_ADMIN: u32 = 12;

/// Drops to `user` but keeps CAP_NET_ADMIN, for the privileged helper (crate::helper):
/// the bounding set is reduced to CAP_NET_ADMIN, the uid and gids become the user's
/// (PR_SET_KEEPCAPS carries the permitted set over the uid change), then the permitted and
/// effective sets are set to exactly {CAP_NET_ADMIN}. With `ambient`, CAP_NET_ADMIN is
/// also made inheritable and ambient, so that a hook script and the `ip` it runs (no file
/// capabilities, not set-uid) keep it across execve. Finally PR_SET_NO_NEW_PRIVS (no
/// set-uid or file-capability gain through exec) and PR_SET_DUMPABLE 0 (the worker, which
/// runs as the same user, cannot read or trace this process's memory). Checked afterwards.
pub fn drop_to_net_admin(user: &User, ambient: bool) -> Result<(), PrivilegeError> {
    if user.uid == 0 {
        return Err(PrivilegeError::RootUser(user.name.clone()));
    }
    let net_admin = 1u64 << CAP_NET_ADMIN;
    // SAFETY: prctl and the id calls take integer or array arguments.
    unsafe {
        check("prctl(PR_SET_KEEPCAPS)", libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        for cap in 0..64 {
            if cap == CAP_NET_ADMIN as libc::c_ulong {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINVAL) {
                    break;
                }
                return Err(PrivilegeError::Call { call: "prctl(PR_CAPBSET_DROP)", source: e });
            }
        }
        let _ = libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        check("setgroups", libc::setgroups(1, &user.gid))?;
        check("setresgid", libc::setresgid(user.gid, user.gid, user.gid))?;
        check("setresuid", libc::setresuid(user.uid, user.uid, user.uid))?;
    }
    set_capabilities(net_admin, net_admin, if ambient { net_admin } else { 0 })?;
    // SAFETY: prctl with integer arguments.
    unsafe {
        if ambient {
            check(
                "prctl(PR_CAP_AMBIENT_RAISE)",
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    CAP_NET_ADMIN as libc::c_ulong,
                    0,
                    0,
                ),
            )?;
        }
        check("prctl(PR_SET_KEEPCAPS)", libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
        check("prctl(PR_SET_NO_NEW_PRIVS)", libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        check("prctl(PR_SET_DUMPABLE)", libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0))?;
    }
    // SAFETY: getuid/geteuid cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    let caps = capabilities()?;
    let want = [net_admin, net_admin, if ambient { net_admin } else { 0 }];
    if uid == 0 || euid == 0 || caps != want {
        return Err(PrivilegeError::StillPrivileged(format!(
            "uid {uid}, euid {euid}, capability sets {caps:x?}"
        )));
    }
    Ok(())
}

/// The header of capget(2)/capset(2) (`struct __user_cap_header_struct`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

impl CapHeader {
    /// Version 3: two [`CapData`], for 64-bit sets, of this thread.
    fn v3() -> Self {
        Self { version: 0x2008_0522, pid: 0 }
    }
}

/// One 32-bit half of the three capability sets (`struct __user_cap_data_struct`).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets this thread's effective, permitted and inheritable capability sets (capset(2)).
pub fn set_capabilities(effective: u64, permitted: u64, inheritable: u64) -> Result<(), PrivilegeError> {
    let mut h = CapHeader::v3();
    let half = |v: u64, i: u32| (v >> (32 * i)) as u32;
    let d = [0, 1].map(|i| CapData {
        effective: half(effective, i),
        permitted: half(permitted, i),
        inheritable: half(inheritable, i),
    });
    // SAFETY: header and two data structs, as capset version 3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &raw mut h, d.as_ptr()) };
    if r != 0 {
        return Err(PrivilegeError::Call { call: "capset", source: io::Error::last_os_error() });
    }
    Ok(())
}

/// Checks that this thread holds no capability (effective, permitted, inheritable) and
/// is not root.
pub fn verify_unprivileged() -> Result<(), PrivilegeError> {
    // SAFETY: getuid/geteuid cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid == 0 || euid == 0 {
        return Err(PrivilegeError::StillPrivileged(format!("uid {uid}, euid {euid}")));
    }
    let caps = capabilities()?;
    if caps.iter().any(|&c| c != 0) {
        return Err(PrivilegeError::StillPrivileged(format!("capability sets {caps:x?}")));
    }
    Ok(())
}

/// The effective, permitted and inheritable capability sets of this thread (64 bits
/// each), from capget(2).
pub fn capabilities() -> Result<[u64; 3], PrivilegeError> {
    let mut h = CapHeader::v3();
    let mut d = [CapData::default(); 2];
    // SAFETY: header and two data structs, as capget version 3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capget, &raw mut h, d.as_mut_ptr()) };
    if r != 0 {
        return Err(PrivilegeError::Call { call: "capget", source: io::Error::last_os_error() });
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok([
        join(d[0].effective, d[1].effective),
        join(d[0].permitted, d[1].permitted),
        join(d[0].inheritable, d[1].inheritable),
    ])
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
