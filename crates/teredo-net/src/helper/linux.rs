//! The helper on Linux: spawned by a fork of the root daemon, it keeps only CAP_NET_ADMIN,
//! enters its sandbox and serves the daemon's requests on a Unix socket (see the
//! module comment of [`super`]).

use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, Shutdown};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use tracing::{error, info, warn};

use super::message::{MessageError, REPLY_LEN, REQUEST_LEN};
use super::{Decision, HelperOptions, Refusal, Reply, Request, decide};
use crate::client_if::ClientInterface;
use crate::hook::{HookRunner, HookState};
use crate::ifconfig::{InterfaceConfig, Route};
use crate::netlink::Netlink;
use crate::privileges::{self, PrivilegeError};
use crate::sandbox::landlock::{Outcome, Paths, SYSLOG};
use crate::sandbox::{self, Kind, Limits};
use crate::tun::Tun;

/// Why the helper could not be started or talked to.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// fork(2) failed.
    #[error("privileged helper: fork: {0}")]
    Fork(io::Error),
    /// Talking to the helper failed (it died, or the socket broke).
    #[error("privileged helper: {0}")]
    Io(#[from] io::Error),
    /// The helper could not reduce its privileges, or the options were wrong.
    #[error("privileged helper: {0}")]
    Privileges(#[from] PrivilegeError),
    /// The helper reported a failure instead of starting (errno).
    #[error("privileged helper failed to start: {}", io::Error::from_raw_os_error(*.0))]
    Start(i32),
    /// The helper's answer was malformed or out of place.
    #[error("privileged helper: unexpected reply: {0}")]
    Protocol(String),
}

impl From<MessageError> for HelperError {
    fn from(e: MessageError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// The worker's end: a running helper.
#[derive(Debug)]
pub struct Helper {
    sock: UnixStream,
    pid: libc::pid_t,
    reaped: bool,
}

/// Forks the helper for `tun`. Must be called as root and before the daemon drops its
/// own privileges. Returns once the helper has reduced its privileges and said so.
///
/// # Safety
///
/// The process must have a single thread: the child runs Rust code after the fork
/// (it allocates, logs, runs hooks), and a lock another thread held at the fork would
/// never be released in it.
pub unsafe fn spawn(tun: &Tun, options: &HelperOptions) -> Result<Helper, HelperError> {
    if options.user.uid == 0 {
        return Err(PrivilegeError::RootUser(options.user.name.clone()).into());
    }
    // std makes both ends close-on-exec: a hook script inherits neither.
    let (ours, theirs) = UnixStream::pair()?;
    // SAFETY: the caller guarantees a single thread (this function's contract).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(HelperError::Fork(io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(ours);
        let code = helper_main(theirs, tun, options);
        // SAFETY: leave without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    drop(theirs);
    let mut helper = Helper { sock: ours, pid, reaped: false };
    match helper.read_reply() {
        Ok(Reply::Ready) => Ok(helper),
        Ok(Reply::Failed(errno)) => {
            let _ = helper.finish();
            Err(HelperError::Start(errno))
        }
        Ok(other) => Err(HelperError::Protocol(format!("{other:?} instead of Ready"))),
        Err(e) => Err(e),
    }
}

impl Helper {
    /// The helper's process id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Asks for `request` and waits for the answer.
    pub fn request(&mut self, request: Request) -> Result<Reply, HelperError> {
        send_all(&self.sock, &request.encode())?;
        self.read_reply()
    }

    /// Asks the helper to bring the interface up with `address` and `mtu`.
    pub fn up(&mut self, address: Ipv6Addr, mtu: u16) -> Result<Reply, HelperError> {
        self.request(Request::Up { address, mtu })
    }

    /// Asks the helper to take the interface down.
    pub fn down(&mut self) -> Result<Reply, HelperError> {
        self.request(Request::Down)
    }

    /// Asks a relay's helper to add its route.
    pub fn announce(&mut self) -> Result<Reply, HelperError> {
        self.request(Request::Announce)
    }

    /// Asks a relay's helper to delete its route.
    pub fn withdraw(&mut self) -> Result<Reply, HelperError> {
        self.request(Request::Withdraw)
    }

    /// Closes the connection; the helper runs its final `down` (and `destroy`) and
    /// exits. Waits for it and returns its exit status.
    pub fn finish(mut self) -> Result<i32, HelperError> {
        self.close_and_wait()
    }

    fn read_reply(&mut self) -> Result<Reply, HelperError> {
        let mut b = [0u8; REPLY_LEN];
        self.sock.read_exact(&mut b)?;
        Ok(Reply::decode(&b)?)
    }

    fn close_and_wait(&mut self) -> Result<i32, HelperError> {
        let _ = self.sock.shutdown(Shutdown::Both);
        if self.reaped {
            return Ok(0);
        }
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                self.reaped = true;
                return Err(e.into());
            }
        }
        self.reaped = true;
        Ok(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 })
    }
}

impl Drop for Helper {
    /// Closes the connection and waits for the helper's final `down` (bounded by the
    /// hook timeout), so that no zombie is left.
    fn drop(&mut self) {
        let _ = self.close_and_wait();
    }
}

/// What the helper applies requests with.
enum Backend {
    Direct(ClientInterface<Netlink>),
    Hook(HookRunner),
    /// A relay's route.
    Relay(Netlink, Route),
}

/// Adds (`announce`) or deletes the relay's route; adding it twice or deleting it
/// twice is no error.
fn set_route(nl: &mut Netlink, route: &Route, announce: bool) -> Reply {
    let (done, what) = if announce {
        (nl.add_route(route).or_else(|e| if e.is_exists() { Ok(()) } else { Err(e) }), "add")
    } else {
        (nl.remove_route(route).or_else(|e| if e.is_absent() { Ok(()) } else { Err(e) }), "delete")
    };
    match done {
        Ok(()) => Reply::Applied,
        Err(e) => {
            error!("cannot {what} the relay's {route}: {e}");
            Reply::Failed(e.errno().unwrap_or(-1))
        }
    }
}

impl Backend {
    fn apply(&mut self, request: Request) -> Reply {
        match (self, request) {
            (Self::Relay(nl, route), Request::Announce) => set_route(nl, route, true),
            (Self::Relay(nl, route), Request::Withdraw) => set_route(nl, route, false),
            (Self::Relay(..), Request::Up { .. } | Request::Down)
            | (Self::Direct(_) | Self::Hook(_), Request::Announce | Request::Withdraw) => {
                Reply::Refused(Refusal::WrongRole)
            }
            (Self::Direct(iface), Request::Up { address, mtu }) => match iface.up(address, mtu) {
                Ok(()) => Reply::Applied,
                Err(e) => {
                    error!("cannot bring the Teredo interface up: {e}");
                    Reply::Failed(e.errno().unwrap_or(-1))
                }
            },
            (Self::Direct(iface), Request::Down) => match iface.down() {
                Ok(()) => Reply::Applied,
                Err(e) => {
                    error!("cannot take the Teredo interface down: {e}");
                    Reply::Failed(e.errno().unwrap_or(-1))
                }
            },
            (Self::Hook(runner), Request::Up { address, mtu }) => {
                run_hook(runner, HookState::Up { address, mtu })
            }
            (Self::Hook(runner), Request::Down) => run_hook(runner, HookState::Down),
        }
    }

    fn finish(&mut self) {
        match self {
            Self::Direct(iface) => {
                if let Err(e) = iface.down() {
                    error!("final down: {e}");
                }
            }
            Self::Hook(runner) => {
                run_hook(runner, HookState::Down);
                run_hook(runner, HookState::Destroy);
            }
            Self::Relay(nl, route) => {
                set_route(nl, route, false);
            }
        }
    }
}

fn run_hook(runner: &mut HookRunner, state: HookState) -> Reply {
    match runner.run(state) {
        Ok(status) => {
            if status != 0 {
                warn!("{} ({}): exit status {status}", runner.path().display(), state.name());
            }
            Reply::Hook(status)
        }
        Err(e) => {
            error!("{e}");
            let errno = match &e {
                crate::hook::HookError::Interface { source, .. }
                | crate::hook::HookError::Spawn { source, .. }
                | crate::hook::HookError::Wait { source, .. } => source.raw_os_error(),
            };
            Reply::Failed(errno.unwrap_or(-1))
        }
    }
}

/// The helper process: never returns to the caller's code (its result is the exit
/// status).
fn helper_main(mut sock: UnixStream, tun: &Tun, options: &HelperOptions) -> i32 {
    // SAFETY: prctl and signal with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"teredo-helper".as_ptr(), 0, 0, 0);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // A relay's helper keeps no descriptor of the TUN: when the daemon dies, its
    // interface and route go at once.
    if options.route.is_some() {
        close_other_descriptors(&[sock.as_raw_fd()]);
    } else {
        close_other_descriptors(&[sock.as_raw_fd(), tun.as_raw_fd()]);
    }
    let fail = |sock: &mut UnixStream, errno: i32| {
        let _ = sock.write_all(&Reply::Failed(errno).encode());
        1
    };
    if let Err(e) = privileges::drop_to_net_admin(&options.user, options.hook.is_some()) {
        error!("privileged helper: {e}");
        let errno = match &e {
            PrivilegeError::Call { source, .. } => source.raw_os_error().unwrap_or(libc::EPERM),
            _ => libc::EPERM,
        };
        return fail(&mut sock, errno);
    }
    let ifindex = tun.ifindex();
    let mut backend = match (&options.hook, options.route) {
        (Some(path), _) => {
            info!("privileged helper: the hook {} configures the interface", path.display());
            Backend::Hook(HookRunner::new(path.clone(), ifindex))
        }
        (None, route) => match Netlink::open() {
            Ok(nl) => match route {
                Some(r) => Backend::Relay(nl, Route { ifindex, ..r }),
                None => Backend::Direct(ClientInterface::new(nl, ifindex)),
            },
            Err(e) => {
                error!("privileged helper: {e}");
                return fail(&mut sock, e.errno().unwrap_or(-1));
            }
        },
    };
    if let Err(e) = enter_sandbox(options) {
        error!("privileged helper: sandbox: {e}");
        return fail(&mut sock, e.raw_os_error().unwrap_or(libc::EPERM));
    }
    if sock.write_all(&Reply::Ready.encode()).is_err() {
        backend.finish();
        return 1;
    }
    serve(&mut sock, &mut backend);
    backend.finish();
    0
}

/// The helper's sandbox (crate::sandbox), once its netlink socket is open. Without a
/// hook it needs no file (only syslog's socket), writes none and never forks: no file
/// access (Landlock), RLIMIT_FSIZE 0, RLIMIT_NPROC 0, the small [`Kind::Helper`] list.
/// A hook script is the administrator's own program, and it and the programs it runs
/// inherit all of it: its needs cannot be known in advance (Debian's runs `ip`; the lab's
/// write files), so a hook helper gets no Landlock and no file-size limit, may start
/// processes, and gets [`Kind::HookHelper`]'s deny-list; it still runs unprivileged
/// but for CAP_NET_ADMIN, with no new privileges.
fn enter_sandbox(options: &HelperOptions) -> io::Result<()> {
    let hook = options.hook.is_some();
    if !hook {
        let paths = Paths { connect: vec![SYSLOG.into()], ..Paths::default() };
        match sandbox::restrict_files(&paths)? {
            Outcome::None => {
                warn!("privileged helper: the kernel has no Landlock: file access is not restricted")
            }
            Outcome::Partial | Outcome::Full => {}
        }
    }
    let kind = if hook { Kind::HookHelper } else { Kind::Helper };
    let limits =
        Limits { no_process: !hook, no_file_writes: !hook, descriptor_headroom: HELPER_DESCRIPTOR_HEADROOM };
    let entered = sandbox::enter(kind, limits, options.seccomp)?;
    for s in &entered.skipped {
        info!("privileged helper: sandbox without {s}");
    }
    Ok(())
}

/// Descriptors the helper may open besides its own: a netlink socket or an interface
/// query socket at a time, a hook's pipes.
const HELPER_DESCRIPTOR_HEADROOM: u64 = 16;

/// Serves requests until end of file, an I/O error or a malformed request.
fn serve(sock: &mut UnixStream, backend: &mut Backend) {
    let mut b = [0u8; REQUEST_LEN];
    loop {
        if let Err(e) = sock.read_exact(&mut b) {
            if e.kind() != io::ErrorKind::UnexpectedEof {
                warn!("privileged helper: reading a request: {e}");
            }
            return;
        }
        let decision = decide(&b);
        let reply = match decision {
            Decision::Malformed(e) => {
                warn!("privileged helper: malformed request ({e}); closing");
                let _ = sock.write_all(&Reply::Refused(Refusal::Malformed).encode());
                return;
            }
            Decision::Refuse { address, mtu, refusal } => {
                warn!("privileged helper: refusing up {address} MTU {mtu}: {refusal}");
                Reply::Refused(refusal)
            }
            Decision::Apply(Request::Up { address, mtu }) => {
                info!("Teredo interface up: {address}, MTU {mtu}");
                backend.apply(Request::Up { address, mtu })
            }
            Decision::Apply(Request::Down) => {
                info!("Teredo interface down");
                backend.apply(Request::Down)
            }
            Decision::Apply(r @ (Request::Announce | Request::Withdraw)) => backend.apply(r),
        };
        if sock.write_all(&reply.encode()).is_err() {
            return;
        }
    }
}

/// Writes all of `b` with MSG_NOSIGNAL: a dead helper is an error, never a SIGPIPE.
fn send_all(sock: &UnixStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        // SAFETY: b is valid for reads of b.len() bytes.
        let n = unsafe { libc::send(sock.as_raw_fd(), b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        b = &b[n as usize..];
    }
    Ok(())
}

/// Closes every descriptor above 2 except those in `keep`.
fn close_other_descriptors(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&fd| u32::try_from(fd).ok()).collect();
    keep.sort_unstable();
    let mut first = 3u32;
    for &k in keep.iter().chain(std::iter::once(&u32::MAX)) {
        if k > first {
            let last = k - 1;
            // SAFETY: closing descriptors this process owns; nothing else uses them.
            let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
            if r != 0 {
                // Kernels before 5.9: close one by one, up to a sane bound.
                for fd in first..=last.min(65535) {
                    // SAFETY: as above.
                    unsafe { libc::close(fd as RawFd) };
                }
            }
        }
        first = first.max(k.saturating_add(1));
    }
}
