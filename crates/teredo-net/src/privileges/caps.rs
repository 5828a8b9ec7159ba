//! Linux capabilities (capabilities(7)): emptying every set when the daemon drops root,
//! and keeping exactly CAP_NET_ADMIN for the privileged helper.

use std::io;

use super::{PrivilegeError, User, check, set_ids};

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
    }
    set_ids(user)?;
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

/// Checks that this thread holds no capability (effective, permitted, inheritable).
pub(super) fn verify_none() -> Result<(), PrivilegeError> {
    let caps = capabilities()?;
    if caps.iter().any(|&c| c != 0) {
        return Err(PrivilegeError::StillPrivileged(format!("capability sets {caps:x?}")));
    }
    Ok(())
}

/// Before the uid changes: no capability survives it, the bounding and ambient sets are
/// emptied while CAP_SETPCAP is still held.
pub(super) fn before_drop() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        check("prctl(PR_SET_KEEPCAPS)", libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))?;
        // EINVAL marks the end of the capabilities this kernel knows.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
            {
                break;
            }
        }
        let _ = libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    }
    Ok(())
}

/// After the uid changed: no privilege can be regained through execve.
pub(super) fn after_drop() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments.
    check("prctl(PR_SET_NO_NEW_PRIVS)", unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
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
