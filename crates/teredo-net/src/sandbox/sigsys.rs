//! The SIGSYS handler behind the seccomp filter's `SECCOMP_RET_TRAP` (seccomp(2),
//! "SECCOMP_RET_TRAP"): a call outside the allow-list is never silent. The handler counts
//! it in [`denied`], writes `teredo: seccomp: denied system call N` on standard error with
//! write(2) (async-signal-safe: no allocation, no lock), and makes the call return
//! `-EPERM` by setting the return register in the saved context, so that the thread goes
//! on with an ordinary error instead of dying. The control thread logs the count when it
//! grows and `teredo status` shows it (`seccomp_denied`).
//!
//! Where this file does not know the return register (architectures other than x86_64
//! and aarch64), [`TRAP_SUPPORTED`] is false and the filter returns `EPERM` itself
//! (`SECCOMP_RET_ERRNO`): the call still fails, but is neither counted nor reported.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether this architecture's denied calls go through the handler (see the module
/// comment).
pub const TRAP_SUPPORTED: bool =
    cfg!(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")));

static DENIED: AtomicU64 = AtomicU64::new(0);

/// How many calls the filter denied in this process.
pub fn denied() -> u64 {
    DENIED.load(Ordering::Relaxed)
}

/// `siginfo_t` for SIGSYS as the kernel fills it (`_sigsys` in `<asm-generic/siginfo.h>`):
/// after the three ints (and the padding of 64-bit architectures), the faulting address,
/// the system call number and the audit architecture.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    #[cfg(target_pointer_width = "64")]
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

/// Formats `n` in decimal into `buf`, returning the digits.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Sets the system call's return value in the interrupted context.
///
/// # Safety
///
/// `context` is the `ucontext_t` the kernel passed to a SA_SIGINFO handler.
#[allow(unused_variables)]
unsafe fn set_return(context: *mut libc::c_void, value: i64) {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let uc = context.cast::<libc::ucontext_t>();
        // SAFETY: the kernel's context, writable by the handler (the caller's contract).
        unsafe { (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = value };
    }
    #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
    {
        let uc = context.cast::<libc::ucontext_t>();
        // SAFETY: as above; x0 holds the return value.
        unsafe { (*uc).uc_mcontext.regs[0] = value as u64 };
    }
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let nr = if info.is_null() {
        -1
    } else {
        // SAFETY: for SIGSYS the kernel fills the `_sigsys` member (module comment).
        unsafe { (*info.cast::<SigsysInfo>()).syscall }
    };
    DENIED.fetch_add(1, Ordering::Relaxed);
    let mut digits = [0u8; 20];
    let mut msg = [0u8; 80];
    let head = b"teredo: seccomp: denied system call ";
    let num = decimal(u64::try_from(nr).unwrap_or(u64::MAX), &mut digits);
    let mut n = 0;
    for &b in head.iter().chain(num).chain(b"\n") {
        if n < msg.len() {
            msg[n] = b;
            n += 1;
        }
    }
    // SAFETY: write(2) is async-signal-safe; errno is saved and restored around it; the
    // context is the kernel's.
    unsafe {
        let saved = *libc::__errno_location();
        libc::write(2, msg.as_ptr().cast(), n);
        *libc::__errno_location() = saved;
        set_return(context, -i64::from(libc::EPERM));
    }
}

/// Installs the handler (SA_SIGINFO, on the alternate stack when the thread has one) and
/// unblocks SIGSYS in the calling thread (SIGSYS from a filter is synchronous: it goes to
/// the thread that made the call, so every thread must leave it unblocked; the daemon's
/// signal mask does not block it).
pub fn install() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid start; the handler has the SA_SIGINFO
    // signature and only does async-signal-safe work.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGSYS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimals() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(101, &mut b), b"101");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }
}
