//! Per-peer steering (Linux): both directions of one peer's traffic reach the same worker.
//!
//! A relay runs `n` workers, one per core. Worker `i` owns UDP socket `i` of a SO_REUSEPORT
//! group (all bound to the same address and port, in order `0..n`), queue `i` of a
//! multi-queue TUN device (created first, then cloned `n − 1` times, in order), and its own
//! peer table. A relay's peer is a Teredo client, known by its mapped IPv4 address and UDP
//! port. Those are the source address and port of every datagram it sends us, and they are
//! also written, obfuscated, in its Teredo IPv6 address (RFC 4380 §4:
//! `prefix(32) : server(32) : flags(16) : port(16) : client IPv4(32)`, bytes 10..12 being the
//! port XOR 0xffff and bytes 12..16 the IPv4 address XOR 0xffffffff). So the kernel can pick
//! the worker of a peer on both sides from the packet alone:
//!
//! - UDP side ([`steer_udp`]): a classic BPF program attached with
//!   `SO_ATTACH_REUSEPORT_CBPF` returns the index of the socket that gets each datagram,
//!   computed from the mapping embedded in its inner Teredo source address (the same as
//!   the outer source, except for a client behind a symmetric NAT), or else from its IPv4
//!   source address and UDP source port;
//! - TUN side ([`steer_tun`]): an eBPF socket-filter program attached with
//!   `TUNSETSTEERINGEBPF` returns the queue of each IPv6 packet the kernel routes into the
//!   device, computed from the Teredo destination address (queue 0 for a destination
//!   outside the served prefix).
//!
//! Both programs compute exactly [`shard`], in 32-bit arithmetic: if they disagreed by one
//! bit, a peer's inbound datagrams would land on one worker and its outbound packets on
//! another, whose peer table does not know it.
//!
//! Both rely on the order the kernel keeps: socket `i` of a reuseport group is the `i`-th
//! bound (as long as none is closed), and queue `i` of a TUN is the `i`-th attached (a queue
//! that is closed or detached is replaced by the last one).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The multiplier of the hash (2^32 divided by the golden ratio, made odd): Knuth's
/// multiplicative hashing, whose high bits mix all the input bits.
const GOLDEN: u32 = 0x9E37_79B1;

/// The worker of the peer at `ip:port` among `n` (1 to 65,535), under `key`.
///
/// Two rounds of multiplicative hashing, the address (mixed with half of the key) first,
/// then the port (with the other half), so that no simple relation between addresses and
/// ports (such as an equal `ip ^ port`) keeps peers together whatever the key; the 16
/// high bits of the result are scaled to `0..n` by a multiplication rather than a
/// remainder, so that every bit counts whatever `n`. The daemon draws `key` at random at
/// start-up, so that nobody outside can choose peers that all land on one worker. The BPF
/// programs of [`steer_udp`] and [`steer_tun`] compute exactly this, in 32-bit arithmetic.
pub fn shard(ip: Ipv4Addr, port: u16, n: u32, key: u64) -> u32 {
    let (k1, k2) = split_key(key);
    let h = (((u32::from(ip) ^ k1).wrapping_mul(GOLDEN) ^ u32::from(port) ^ k2).wrapping_mul(GOLDEN)) >> 16;
    (h * n) >> 16
}

/// The two 32-bit halves of a steering key: for the address, and for the port.
fn split_key(key: u64) -> (u32, u32) {
    (key as u32, (key >> 32) as u32)
}

fn check_n(n: u32) -> io::Result<()> {
    if n == 0 || n > u32::from(u16::MAX) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("steering among {n} workers")));
    }
    Ok(())
}

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; sparc numbers it differently). The
/// `libc` crate does not export it for every Linux target.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 0x35;

/// One classic BPF instruction.
const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

/// The classic BPF program of [`steer_udp`] for `n` sockets and the Teredo `prefix`.
///
/// A reuseport program sees the datagram from its UDP payload on (the kernel pulled the UDP
/// header). When the payload is a bare IPv6 packet (no authentication or origin header)
/// whose source is under `prefix`, the peer is the mapping embedded, obfuscated, in that
/// source (RFC 4380 §4): the worker is then the same as the TUN side's for the peer even
/// when its datagrams come from another mapping (a client behind a symmetric NAT, trusted
/// by its reply bubble). Otherwise (a datagram shorter than an IPv6 header included) the peer is
/// the IPv4 source and UDP source port, read relative to the network header
/// (`SKF_NET_OFF`), with the IPv4 header length from its IHL field (tested on Linux 6.18:
/// `ldxb` with a negative offset works), so options do not break it.
///
/// ```text
///  0: ld   len                         A = payload length
///  1: jge  #40, 2, 12                  long enough for an IPv6 header?
///  2: ldb  [0]                         A = first byte of the payload
///  3: and  #0xf0
///  4: jeq  #0x60, 5, 12                an IPv6 packet first?
///  5: ld   [8]                         A = source bits 0..32
///  6: jeq  #prefix, 7, 12              a Teredo source?
///  7: ldh  [18]                        A = obfuscated port
///  8: xor  #0xffff
///  9: tax                              X = port
/// 10: ld   [20]                        A = obfuscated IPv4 address
/// 11: ja   17                          (to xor #0xffffffff)
/// 12: ldxb 4*([SKF_NET_OFF+0] & 0xf)   X = IPv4 header length
/// 13: ldh  [x + SKF_NET_OFF+0]         A = UDP source port
/// 14: tax                              X = port
/// 15: ld   [SKF_NET_OFF+12]            A = IPv4 source address
/// 16: ja   18
/// 17: xor  #0xffffffff                 the embedded address
/// 18: xor  #k1
/// 19: mul  #0x9e3779b1
/// 20: xor  x                           ^ port
/// 21: xor  #k2
/// 22: mul  #0x9e3779b1
/// 23: rsh  #16
/// 24: mul  #n
/// 25: rsh  #16
/// 26: ret  a
/// ```
fn udp_program(n: u32, prefix: u32, key: u64) -> [libc::sock_filter; 27] {
    let (k1, k2) = split_key(key);
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD,
        BPF_LDX, BPF_LEN, BPF_MISC, BPF_MSH, BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR,
    };
    let net = libc::SKF_NET_OFF as u32;
    // A conditional jump (`op`) at instruction `at` to `t` if true, `f` if false.
    let jump = |op: u32, at: u8, k: u32, t: u8, f: u8| libc::sock_filter {
        code: (BPF_JMP | op | BPF_K) as u16,
        jt: t - at - 1,
        jf: f - at - 1,
        k,
    };
    const OUTER: u8 = 12;
    [
        stmt(BPF_LD | BPF_W | BPF_LEN, 0),
        jump(BPF_JGE, 1, 40, 2, OUTER),
        stmt(BPF_LD | BPF_B | BPF_ABS, 0),
        stmt(BPF_ALU | BPF_AND | BPF_K, 0xf0),
        jump(BPF_JEQ, 4, 0x60, 5, OUTER),
        stmt(BPF_LD | BPF_W | BPF_ABS, 8),
        jump(BPF_JEQ, 6, prefix, 7, OUTER),
        stmt(BPF_LD | BPF_H | BPF_ABS, 18),
        stmt(BPF_ALU | BPF_XOR | BPF_K, 0xffff),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_W | BPF_ABS, 20),
        stmt(BPF_JMP | BPF_JA, 17 - 11 - 1),
        stmt(BPF_LDX | BPF_B | BPF_MSH, net),
        stmt(BPF_LD | BPF_H | BPF_IND, net),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_W | BPF_ABS, net.wrapping_add(12)),
        stmt(BPF_JMP | BPF_JA, 18 - 16 - 1),
        stmt(BPF_ALU | BPF_XOR | BPF_K, 0xffff_ffff),
        stmt(BPF_ALU | BPF_XOR | BPF_K, k1),
        stmt(BPF_ALU | BPF_MUL | BPF_K, GOLDEN),
        stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
        stmt(BPF_ALU | BPF_XOR | BPF_K, k2),
        stmt(BPF_ALU | BPF_MUL | BPF_K, GOLDEN),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 16),
        stmt(BPF_ALU | BPF_MUL | BPF_K, n),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 16),
        stmt(BPF_RET | libc::BPF_A, 0),
    ]
}

/// Attaches the cBPF program to `first` (socket 0 of a SO_REUSEPORT group of `n` sockets, bound in order).
///
/// Each datagram then goes to socket [`shard`]`(address, port, n, key)` of the group, where
/// `address:port` is the mapping embedded in its inner Teredo source under `prefix`, or
/// else its IPv4 source address and UDP source port. The program belongs to the group: attach it once, with the `n` sockets bound
/// (the kernel falls back to its own hash when the index is not, or no longer, a socket).
/// Needs no privilege.
pub fn steer_udp(first: &impl AsRawFd, n: u32, prefix: u32, key: u64) -> io::Result<()> {
    check_n(n)?;
    let mut program = udp_program(n, prefix, key);
    let fprog = libc::sock_fprog { len: program.len() as libc::c_ushort, filter: program.as_mut_ptr() };
    // SAFETY: a socket descriptor and a sock_fprog pointing at `program`, which outlives the
    // call (the kernel copies the program).
    let r = unsafe {
        libc::setsockopt(
            first.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("setsockopt(SO_ATTACH_REUSEPORT_CBPF): {e}")))
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// dst_reg:4 and src_reg:4, in the bit-field order of the target.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u32, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0xf);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0xf);
        Self { code: code as u8, regs, off, imm }
    }
}

// eBPF opcodes (linux/bpf.h) beyond the classic ones `libc` has.
const BPF_ALU64: u32 = 0x07;
const BPF_JMP32: u32 = 0x06;
const BPF_MOV: u32 = 0xb0;
const BPF_JNE: u32 = 0x50;
const BPF_EXIT: u32 = 0x90;
/// `bpf(2)` command and program type.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// The offset of the destination address in an IPv6 header.
const IPV6_DST: i32 = 24;

/// The eBPF program of [`steer_tun`] for `n` queues and the Teredo `prefix`.
///
/// The packet starts at its IPv6 header. Legacy `BPF_LD | BPF_ABS` loads (context in r6)
/// return the big-endian field in host order and end the program with 0 when the packet is
/// too short. The port and address fields are the obfuscated ones (RFC 4380 §4), so
/// `ip' ^ (0xffffffff ^ k1) = ip ^ k1` and `port' ^ (0xffff ^ k2) = port ^ k2`. All
/// arithmetic is 32-bit, as in [`shard`].
///
/// ```text
///  0: r6 = r1                        context, for the ld_abs loads
///  1: r0 = ntohl(*(u32 *)(skb + 24)) destination bits 0..32
///  2: if w0 != prefix goto 15        not a Teredo destination
///  3: r0 = ntohs(*(u16 *)(skb + 34)) obfuscated port
///  4: r7 = r0
///  5: r0 = ntohl(*(u32 *)(skb + 36)) obfuscated IPv4 address
///  6: w0 ^= 0xffffffff ^ k1          = ip ^ k1
///  7: w0 *= 0x9e3779b1
///  8: w0 ^= w7
///  9: w0 ^= 0xffff ^ k2              ^ port ^ k2
/// 10: w0 *= 0x9e3779b1
/// 11: w0 >>= 16
/// 12: w0 *= n
/// 13: w0 >>= 16
/// 14: exit
/// 15: w0 = 0
/// 16: exit
/// ```
fn tun_program(n: u32, prefix: u32, key: u64) -> [Insn; 17] {
    let (k1, k2) = split_key(key);
    use libc::{BPF_ABS, BPF_ALU, BPF_H, BPF_JMP, BPF_K, BPF_LD, BPF_MUL, BPF_RSH, BPF_W, BPF_X, BPF_XOR};
    [
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),
        Insn::new(BPF_LD | BPF_W | BPF_ABS, 0, 0, 0, IPV6_DST),
        Insn::new(BPF_JMP32 | BPF_JNE | BPF_K, 0, 0, 12, prefix as i32),
        Insn::new(BPF_LD | BPF_H | BPF_ABS, 0, 0, 0, IPV6_DST + 10),
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 7, 0, 0, 0),
        Insn::new(BPF_LD | BPF_W | BPF_ABS, 0, 0, 0, IPV6_DST + 12),
        Insn::new(BPF_ALU | BPF_XOR | BPF_K, 0, 0, 0, (0xffff_ffff ^ k1) as i32),
        Insn::new(BPF_ALU | BPF_MUL | BPF_K, 0, 0, 0, GOLDEN as i32),
        Insn::new(BPF_ALU | BPF_XOR | BPF_X, 0, 7, 0, 0),
        Insn::new(BPF_ALU | BPF_XOR | BPF_K, 0, 0, 0, (0xffff ^ k2) as i32),
        Insn::new(BPF_ALU | BPF_MUL | BPF_K, 0, 0, 0, GOLDEN as i32),
        Insn::new(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 0, 16),
        Insn::new(BPF_ALU | BPF_MUL | BPF_K, 0, 0, 0, n as i32),
        Insn::new(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 0, 16),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        Insn::new(BPF_ALU | BPF_MOV | BPF_K, 0, 0, 0, 0),
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to the program name; the kernel takes
/// the fields it does not get as zero.
#[repr(C, align(8))]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The size of the verifier log asked for when a load fails.
const LOG_SIZE: usize = 64 << 10;

/// Loads `insns` as a socket-filter program; on failure, loads it again with the verifier
/// log and returns the log in the error.
fn load_socket_filter(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    const LICENSE: &[u8] = b"GPL\0";
    let load = |log: Option<&mut [u8]>| -> io::Result<OwnedFd> {
        let mut prog_name = [0u8; 16];
        for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        let (log_level, log_size, log_buf) = match log {
            Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        let attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            kern_version: 0,
            prog_flags: 0,
            prog_name,
        };
        // SAFETY: bpf(BPF_PROG_LOAD) reads `attr` and the instructions and license it points
        // at, and writes at most log_size bytes to log_buf; all outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &raw const attr,
                size_of::<ProgLoadAttr>() as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new descriptor, which we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    };
    load(None).or_else(|e| {
        let mut log = vec![0u8; LOG_SIZE];
        let retry = load(Some(&mut log));
        let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(log.len())])
            .into_owned();
        match retry {
            // Loaded with the log (a transient failure): keep it.
            Ok(fd) => Ok(fd),
            Err(e2) => Err(io::Error::new(
                e.kind(),
                format!("bpf(BPF_PROG_LOAD) of {name}: {e2}; verifier log: {}", text.trim_end()),
            )),
        }
    })
}

/// Loads the eBPF program and attaches it to `tun` (any queue of the multi-queue device). Needs
/// CAP_BPF or CAP_SYS_ADMIN and CAP_NET_ADMIN: call as root before dropping privileges. `prefix`
/// is the first 32 bits of the served Teredo prefix.
///
/// Each IPv6 packet the kernel routes into the device then comes out of queue
/// [`shard`]`(ip, port, n, key)` when its destination is the Teredo address of the client
/// at `ip:port` in `prefix`, and out of queue 0 otherwise (the kernel takes the result modulo
/// the number of queues attached: attach exactly `n`). The device keeps the program; the
/// descriptor of the loaded program is closed on return.
pub fn steer_tun(tun: &impl AsRawFd, n: u32, prefix: u32, key: u64) -> io::Result<()> {
    check_n(n)?;
    let program = tun_program(n, prefix, key);
    let prog = load_socket_filter(&program, "teredo_steer")?;
    let fd: libc::c_int = prog.as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads a c_int (the program's descriptor; the device takes
    // its own reference to the program).
    let r = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETSTEERINGEBPF, &raw const fd) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("ioctl(TUNSETSTEERINGEBPF): {e}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash, spelled out differently: 64-bit arithmetic and a division.
    fn reference(ip: u32, port: u16, n: u32, key: u64) -> u32 {
        let m = 1u64 << 32;
        let a = (u64::from(ip ^ key as u32) * u64::from(GOLDEN)) % m;
        let b = ((a ^ u64::from(port) ^ (key >> 32)) * u64::from(GOLDEN)) % m;
        ((b >> 16) * u64::from(n) / 65_536) as u32
    }

    #[test]
    fn shard_matches_the_reference() {
        let mut x = 0x1234_5678u32;
        for _ in 0..10_000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let (ip, port) = (x.rotate_left(7), (x >> 3) as u16);
            let key = u64::from(x.rotate_right(11)) << 32 | u64::from(x ^ 0x5555_aaaa);
            for n in [1, 2, 3, 7, 8, 256, 65_535] {
                assert_eq!(shard(Ipv4Addr::from(ip), port, n, key), reference(ip, port, n, key));
            }
        }
        assert_eq!(shard(Ipv4Addr::new(192, 0, 2, 1), 40_000, 1, 0), 0);
    }

    #[test]
    fn shard_is_in_range_and_spreads() {
        for key in [0, 0xdead_beef] {
            for n in 1..=16u32 {
                let mut counts = vec![0u32; n as usize];
                for i in 0..4_000u32 {
                    let ip = Ipv4Addr::from(0xc633_6400 + i * 7);
                    let port = (1_024 + i * 13) as u16;
                    let s = shard(ip, port, n, key);
                    assert!(s < n);
                    counts[s as usize] += 1;
                }
                let fair = 4_000 / n;
                for c in counts {
                    assert!(c > fair / 2 && c < fair * 2, "n {n}: {c} of 4000 (fair {fair})");
                }
            }
        }
    }

    #[test]
    fn every_address_bit_counts_whatever_n() {
        // With a remainder by a power of two, the high address bits would never count: here
        // flipping any one input bit moves some peers to another worker.
        for n in [2u32, 4, 8] {
            for bit in 0..32 {
                let moved = (0..256u32)
                    .filter(|&i| {
                        let ip = 0xc000_0200 ^ (i * 0x0101_0101);
                        let a = shard(Ipv4Addr::from(ip), i as u16, n, 7);
                        let b = shard(Ipv4Addr::from(ip ^ (1 << bit)), i as u16, n, 7);
                        a != b
                    })
                    .count();
                assert!(moved > 0, "n {n}: address bit {bit} never changes the worker");
            }
        }
    }

    #[test]
    fn the_key_moves_peers() {
        let peers: Vec<(Ipv4Addr, u16)> =
            (0..64u32).map(|i| (Ipv4Addr::from(0xc633_6401 + i), 40_000)).collect();
        let a: Vec<u32> = peers.iter().map(|&(ip, p)| shard(ip, p, 4, 1)).collect();
        let b: Vec<u32> = peers.iter().map(|&(ip, p)| shard(ip, p, 4, 0x8bad_f00d_0000_0001)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn peers_with_the_same_address_xor_port_do_not_stay_together() {
        // With a hash of ip ^ port alone, (x ^ p, p) would all share a worker, whatever
        // the key: a way to aim peers at one worker.
        for key in [0u64, 0x0123_4567_89ab_cdef] {
            let x = 0xc633_6401u32;
            let mut seen = [false; 4];
            for p in 0..64u16 {
                seen[shard(Ipv4Addr::from(x ^ u32::from(p)), p, 4, key) as usize] = true;
            }
            assert!(seen.iter().filter(|&&s| s).count() >= 3, "key {key:#x}: {seen:?}");
        }
    }

    #[test]
    fn the_tun_program_undoes_the_obfuscation() {
        // The identities the eBPF program relies on, for the obfuscated fields.
        let (k1, k2) = (0x1234_5678u32, 0x9abc_def0u32);
        for (ip, port) in [(0u32, 0u16), (0xc000_0201, 40_000), (u32::MAX, u16::MAX), (0x0102_0304, 1)] {
            assert_eq!(!ip ^ (0xffff_ffff ^ k1), ip ^ k1);
            assert_eq!((u32::from(port) ^ 0xffff) ^ (0xffff ^ k2), u32::from(port) ^ k2);
        }
        let p = tun_program(3, 0x2001_0000, 5);
        // The jump lands on the `w0 = 0` instruction.
        assert_eq!(2 + 1 + p[2].off as usize, 15);
        assert_eq!(p[15], Insn::new(libc::BPF_ALU | BPF_MOV | libc::BPF_K, 0, 0, 0, 0));
    }

    #[test]
    fn a_rejected_program_reports_the_verifier_log() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            assert!(!crate::under_ci(), "needs root (CAP_BPF) under CI=true");
            eprintln!("SKIP a_rejected_program_reports_the_verifier_log: not root");
            return;
        }
        // Loading a program touches no interface. This one reads r0 before writing it.
        let bad = [Insn::new(libc::BPF_JMP | BPF_EXIT, 0, 0, 0, 0)];
        let e = load_socket_filter(&bad, "teredo_bad").unwrap_err().to_string();
        assert!(e.contains("verifier log: ") && e.contains("R0 !read_ok"), "{e}");
        // And the real program loads.
        assert!(load_socket_filter(&tun_program(4, 0x2001_0000, 9), "teredo_steer").is_ok());
    }

    #[test]
    fn zero_workers_is_refused() {
        assert_eq!(check_n(0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(check_n(1).is_ok());
    }
}
