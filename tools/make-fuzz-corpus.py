#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets into tests/fuzz/corpus/.

Seeds are small valid (and nearly valid) inputs, so the fuzzer starts deep in
each parser: an echo request, ARP request and reply, fragment trains in and
out of order, ICMP errors quoting UDP/ICMP. Plain Python, no scapy.
Run: /usr/bin/python3 tools/make-fuzz-corpus.py
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus")
US_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
US = bytes([192, 0, 2, 2])
PEER = bytes([192, 0, 2, 1])


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip(payload, proto=1, ident=1, frag=0, src=PEER, dst=US):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def icmp(t, code, rest, data):
    m = struct.pack("!BBH", t, code, 0) + rest + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def eth(payload, etype=0x0800, dst=US_MAC):
    return dst + PEER_MAC + struct.pack("!H", etype) + payload


def arp(op, tpa=US, tha=b"\0" * 6):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, PEER_MAC, PEER, tha, tpa)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def train(datagrams, ctl=1):
    return b"".join(bytes([ctl]) + struct.pack("!H", len(d)) + d for d in datagrams)


def main():
    echo = icmp(8, 0, struct.pack("!HH", 0x1234, 1), bytes(range(56)))
    write("ether", "echo", eth(ip(echo)))
    write("ether", "arp-request", eth(arp(1), 0x0806, b"\xff" * 6))
    write("ether", "ipv6", eth(b"\x60" + b"\0" * 39, 0x86DD))
    write("arp", "request", b"\x01" + arp(1))
    write("arp", "reply", b"\x00" + arp(2, US, US_MAC))
    write("arp", "not-for-us", b"\x01" + arp(1, bytes([192, 0, 2, 3])))
    big = icmp(8, 0, struct.pack("!HH", 7, 1), bytes(i & 0xFF for i in range(3000)))
    frags = [ip(big[o:o + 1480], ident=77, frag=(0x2000 if o + 1480 < len(big) else 0) | (o // 8))
             for o in range(0, len(big), 1480)]
    write("ip", "echo", train([ip(echo)]))
    write("ip", "frags-in-order", train(frags))
    write("ip", "frags-reversed", train(frags[::-1]))
    write("ip", "frag-timeout", train([frags[0]], ctl=1 | 2 | (40 << 2)))
    write("ip", "overlap", train([frags[0], ip(big[8:1488], ident=77, frag=0x2000 | 1)]))
    write("ip", "udp", train([ip(struct.pack("!HHHH", 5000, 7, 12, 0) + b"abcd", proto=17)]))
    write("icmp", "echo", b"\x01" + echo)
    quoted = ip(struct.pack("!HHHH", 7, 5000, 12, 0), proto=17, src=US, dst=PEER)[:28]
    write("icmp", "port-unreach", b"\x01" + icmp(3, 3, b"\0" * 4, quoted))
    qecho = ip(icmp(8, 0, struct.pack("!HH", 1, 1), b""), src=US, dst=PEER)[:28]
    write("icmp", "host-unreach-echo", b"\x01" + icmp(3, 1, b"\0" * 4, qecho))
    write("icmp", "time-exceeded", b"\x01" + icmp(11, 0, b"\0" * 4, quoted))
    write("icmp", "echo-reply", b"\x01" + icmp(0, 0, struct.pack("!HH", 9, 9), b"x" * 8))
    tcp_seeds()


def tcp(flags, seq=0, ack=0, data=b"", opts=b"", sport=40000, dport=7, wnd=65535):
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, wnd, 0, 0) + opts + data


def rec(ctl, seg):
    return bytes([ctl]) + struct.pack("!H", len(seg)) + seg


def tcp_seeds():
    SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
    linux_opts = bytes.fromhex("020405b40402080a0000000100000000" + "01030307")
    write("tcp_listen", "syn", rec(1, tcp(SYN, 1000, opts=linux_opts)))
    write("tcp_listen", "syn-ack-data", rec(1, tcp(SYN, 1000)) + rec(5, tcp(ACK, 1001, 1)) +
          rec(7, tcp(ACK | PSH, 0, 1, b"hello")))
    write("tcp_listen", "syn-flood", b"".join(rec(1, tcp(SYN, 7 * i, sport=20000 + i)) for i in range(40)))
    write("tcp_listen", "ack-no-conn", rec(1, tcp(ACK, 5, 6)))
    write("tcp_listen", "bad-options", rec(1, tcp(SYN, 1, opts=bytes.fromhex("02000000"))))
    write("tcp_estab", "data", rec(7, tcp(ACK | PSH, 0, 0, b"x" * 100)))
    write("tcp_estab", "ooo", rec(7, tcp(ACK, 200, 0, b"b" * 100)) + rec(7, tcp(ACK, 0, 0, b"a" * 200)))
    write("tcp_estab", "overlap", rec(7, tcp(ACK, 0, 0, b"a" * 100)) + rec(7, tcp(ACK, 50, 0, b"b" * 100)))
    write("tcp_estab", "fin", rec(7, tcp(ACK | FIN, 0, 0)) + rec(7 | 8, tcp(ACK, 1, 1)))
    write("tcp_estab", "rst-exact", rec(7, tcp(RST, 0, 0)))
    write("tcp_estab", "rst-in-window", rec(7, tcp(RST, 100, 0)))
    write("tcp_estab", "zero-window", rec(7, tcp(ACK, 0, 0, wnd=0)) + rec(7 | 16, tcp(ACK, 0, 0, wnd=0)))
    write("tcp_estab", "syn-in-estab", rec(7, tcp(SYN, 0, 0)))


if __name__ == "__main__":
    main()
