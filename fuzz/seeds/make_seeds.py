#!/usr/bin/env python3
"""Writes the seed inputs of the state-machine fuzz targets into fuzz/corpus/<target>/:
the Teredo datagrams of the captures in a directory (UDP payloads, extracted with tshark)
and of the encap target's corpus, each wrapped in the operation that hands a raw datagram to the machine, plus a few
sequences of built operations and the helper's messages. Usage:
    python3 fuzz/seeds/make_seeds.py /work/shared/pcaps
The operation bytes follow crates/teredo-proto/src/fuzz/ (ops.rs, world.rs, and one file
per target); cargo fuzz cmin keeps what adds coverage."""

import hashlib
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def payloads(pcap_dir):
    out = []
    for name in sorted(os.listdir(pcap_dir)):
        if not name.endswith(".pcap"):
            continue
        r = subprocess.run(
            ["tshark", "-r", os.path.join(pcap_dir, name), "-Y", "udp", "-T", "fields", "-e", "udp.payload"],
            capture_output=True, text=True, check=False)
        for line in r.stdout.split():
            first = line.split(",")[0]
            if first:
                out.append(bytes.fromhex(first.replace(":", "")))
    return out


def chunk(b):
    """Ops::chunk: one length byte, or 255 and two."""
    if len(b) < 255:
        return bytes([len(b)]) + b
    return bytes([255]) + len(b).to_bytes(2, "big") + b


def write(target, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def encap_corpus():
    """The encap target's corpus: the unit tests' datagrams and what the fuzzer kept."""
    d = os.path.join(ROOT, "encap")
    return [open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))]


def main():
    ps = payloads(sys.argv[1]) if len(sys.argv) > 1 else []
    ps += encap_corpus()
    for p in ps:
        # A raw datagram from peer 0's mapping (addr4 selector 0, index 0), then time and
        # the timers.
        raw = bytes([4, 0, 0]) + chunk(p) + bytes([11, 0, 100, 0, 12, 1])
        write("tunnel_client", bytes([0]) + raw)
        write("tunnel_relay", bytes([0]) + raw)
        write("endpoint", bytes([0, 3, 0, 0]) + chunk(p) + bytes([8, 0, 100, 0, 9, 1]))
        # The server: primary, a raw datagram from peer 0's mapping, a 1500-byte buffer.
        write("server", bytes([0, 1, 0, 0, 0]) + chunk(p) + bytes([2]))
    # Built sequences: TUN packets to peers 2 and 3, answers to what was sent, timers.
    seq = bytes([7, 0, 0, 2, 0, 100, 0, 0, 5, 0, 2, 5, 1, 1, 11, 0, 0, 8, 0x0b, 12, 1, 6, 0, 0])
    for t in ("tunnel_client", "tunnel_relay"):
        write(t, bytes([0]) + seq)
        write(t, bytes([0x0f]) + seq * 4)
    write("endpoint", bytes([0]) + bytes([5, 0, 0, 2, 0, 100, 0, 0, 4, 0, 2, 8, 0, 0x75, 6, 9, 1, 12, 1]) * 3)
    # The coalescer: two flows of in-order ACK segments, a PSH, UDP datagrams, a flush.
    tcp = bytes([0, 0, 0, 4]) + bytes([0, 1, 0, 4])
    write("coalescer", bytes([2]) + tcp * 6 + bytes([0, 0, 0x40, 4]) + bytes([5, 0, 0, 7, 4]) * 4 + bytes([8]))
    write("coalescer", bytes([1]) + bytes([0, 2, 0x80, 4]) * 8 + bytes([9, 1]) + bytes([5, 1, 2, 3, 4]) * 3)
    # The helper: an Up, a Down, an Up refused, then a malformed request.
    up = b"TH\x01\x01\x05\x00\x00\x00" + bytes.fromhex("20010000c00002010000f227ad58c7c3")
    down = b"TH\x01\x02" + bytes(20)
    low = b"TH\x01\x01\x04\xff\x00\x00" + up[8:]
    write("helper_messages", up + down + low + b"TH\x02\x01" + bytes(20))
    write("helper_messages", b"TH\x01\x80\x02\x03\x00\x00\x00\x00\x00\x00" + b"TH\x01\x80\x03\x00\x00\x00\xff\xff\xff\xff")


if __name__ == "__main__":
    main()
