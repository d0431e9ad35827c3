#!/usr/bin/env python3
"""Write the seed corpus of fuzz_udp into tests/fuzz/corpus/udp/.

Each seed is one control byte and a UDP datagram (see tests/fuzz/fuzz_udp.c):
bit 0 fix the checksum, bit 1 fix the length, bit 2 to the subnet broadcast,
bit 3 advance the clock a second, bit 5 inject twice; bit 4 wrap as an ICMP destination
unreachable (code index in bits 5-7) quoting the bytes as our UDP header.
Plain Python, no scapy. Run: /usr/bin/python3 tools/make-fuzz-corpus-udp.py
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus", "udp")
US = bytes([192, 0, 2, 2])
PEER = bytes([192, 0, 2, 1])
BCAST = bytes([192, 0, 2, 255])

FIX_SUM, FIX_LEN, BROADCAST, TICK, ICMP, TWICE = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def udp(sport, dport, data, src=PEER, dst=US, length=None, checksum=True):
    n = 8 + len(data)
    ulen = n if length is None else length
    seg = struct.pack("!HHHH", sport, dport, ulen, 0) + data
    if checksum:
        s = csum(src + dst + struct.pack("!BBH", 0, 17, n) + seg) or 0xFFFF
        seg = seg[:6] + struct.pack("!H", s) + seg[8:]
    return seg


def write(name, ctl, payload):
    os.makedirs(ROOT, exist_ok=True)
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(bytes([ctl]) + payload)


def main():
    hello = b"hello, port seven"
    # delivered to the socket on port 7, checksum and length already right
    write("to-port-7", 0, udp(9999, 7, hello))
    write("to-port-7-fixed", FIX_SUM | FIX_LEN, udp(9999, 7, hello, checksum=False))
    write("no-checksum", 0, udp(9999, 7, hello, checksum=False))
    write("empty", FIX_SUM | FIX_LEN, udp(9999, 7, b""))
    # the connected socket: from its peer 192.0.2.1:9 to port 5000
    write("to-connected", 0, udp(9, 5000, b"reply from the peer"))
    write("to-connected-big", FIX_SUM | FIX_LEN, udp(9, 5000, bytes(range(256)) * 5))
    write("to-connected-twice", FIX_SUM | FIX_LEN | TWICE, udp(9, 5000, bytes(range(256)) * 5))
    write("to-connected-wrong-port", 0, udp(10, 5000, b"not from the peer"))
    # nobody listening: port unreachable (and the rate limit)
    write("closed-port", 0, udp(9999, 4444, b"anyone?"))
    write("closed-port-tick", TICK, udp(9999, 4444, b"anyone? again"))
    write("port-zero", FIX_SUM | FIX_LEN, udp(9999, 0, b"x"))
    # broadcast: every socket on the port, and no ICMP for a closed one
    write("broadcast-7", FIX_SUM | FIX_LEN | BROADCAST, udp(9999, 7, b"to all", dst=BCAST))
    write("broadcast-closed", FIX_SUM | FIX_LEN | BROADCAST, udp(9999, 4444, b"to all", dst=BCAST))
    # malformed
    write("bad-checksum", FIX_LEN, udp(9999, 7, hello)[:6] + b"\x12\x34" + hello)
    write("length-long", 0, udp(9999, 7, hello, length=8 + len(hello) + 1))
    write("length-short", 0, udp(9999, 7, hello, length=8 + len(hello) - 1))
    write("length-tiny", FIX_SUM, udp(9999, 7, hello, length=3))
    write("short", 0, b"\x27\x0f\x00")
    # ICMP errors about a datagram sent by the connected socket (5000 -> 9)
    quoted = struct.pack("!HHHH", 5000, 9, 16, 0) + b"12345678"
    write("icmp-port-unreach-connected", ICMP | (3 << 5), quoted)
    write("icmp-host-unreach-connected", ICMP | (1 << 5), quoted)
    write("icmp-frag-needed-connected", ICMP | (4 << 5), quoted)
    write("icmp-port-unreach-other", ICMP | (3 << 5), struct.pack("!HHHH", 5000, 10, 16, 0))
    write("icmp-short-quote", ICMP | (3 << 5), b"\x13\x88")


if __name__ == "__main__":
    main()
