//! A minimal reader for the classic pcap files in `tests/pcaps/` (Ethernet, IPv4 or IPv6, UDP):
//! enough to pull the UDP payloads of given frames out as test vectors.

use std::path::PathBuf;

/// The path of a capture shipped with the tests.
pub(crate) fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pcaps").join(name)
}

/// The UDP payload of frame `n` (1-based, as tshark numbers them).
pub(crate) fn udp_payload(name: &str, n: usize) -> Vec<u8> {
    let data = std::fs::read(path(name)).expect("capture is readable");
    assert_eq!(&data[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut at = 24;
    let mut frame = 0;
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let rec = &data[at + 16..at + 16 + len];
        at += 16 + len;
        frame += 1;
        if frame != n {
            continue;
        }
        let mut eth = 14;
        let mut ethertype = u16::from_be_bytes([rec[12], rec[13]]);
        if ethertype == 0x8100 {
            ethertype = u16::from_be_bytes([rec[16], rec[17]]);
            eth = 18;
        }
        let ip = &rec[eth..];
        let udp = match ethertype {
            0x0800 => {
                assert_eq!(ip[9], 17, "frame {n} is UDP");
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                &ip[ihl..usize::from(u16::from_be_bytes([ip[2], ip[3]]))]
            }
            0x86dd => {
                assert_eq!(ip[6], 17, "frame {n} is UDP");
                &ip[40..40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))]
            }
            other => panic!("frame {n} has ethertype {other:#x}"),
        };
        let udp = &udp[..usize::from(u16::from_be_bytes([udp[4], udp[5]])).min(udp.len())];
        return udp[8..].to_vec();
    }
    panic!("{name} has no frame {n}");
}
