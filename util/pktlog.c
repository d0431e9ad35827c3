/*
 * pktlog.c — tcpdump-style one-line summaries of frames. See pktlog.h.
 *
 * Where it sits: a leaf of util/, called by net.c (dev_log_frame) for every
 * frame in and out when the "dev" module logs at debug. It knows the wire
 * formats of Ethernet II, ARP (RFC 826), IPv4 (RFC 791), ICMP (RFC 792),
 * UDP (RFC 768) and the TCP header (RFC 9293 §3.1) but no stack state, and
 * includes no proto/ header: the offsets below are the RFCs' own.
 *
 * Every parser takes (p, len) and touches p[i] only for i < len, checked
 * before the read; every write into the output goes through out_put(),
 * which never passes the end of the buffer.
 */
#include "util/pktlog.h"

#include <stdarg.h>
#include <stdio.h>

#include "util/byteorder.h"

#define ETH_HLEN 14
#define ARP_ETH_IP_LEN 28
#define IP_HLEN_MIN 20
#define ICMP_HLEN 8
#define UDP_HLEN 8
#define TCP_HLEN_MIN 20

/* The output so far: text in buf[0..n), always NUL-terminated. */
struct out {
    char *buf;
    size_t size;
    size_t n;
};

static void out_put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int m;

    if (o->n + 1 >= o->size)
        return; /* full (or no room at all) */
    va_start(ap, fmt);
    m = vsnprintf(o->buf + o->n, o->size - o->n, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    o->n += (size_t)m;
    if (o->n >= o->size)
        o->n = o->size - 1; /* cut: vsnprintf wrote what fit */
}

static void out_ip(struct out *o, const uint8_t *a)
{
    out_put(o, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
}

static void out_mac(struct out *o, const uint8_t *m)
{
    out_put(o, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* ---- ARP (RFC 826) ---------------------------------------------------------
 *  0 hrd | 2 pro | 4 hln | 5 pln | 6 op | 8 sha | 14 spa | 18 tha | 24 tpa */
static void fmt_arp(struct out *o, const uint8_t *p, size_t len)
{
    uint16_t op;

    out_put(o, "ARP, ");
    if (len < 8) {
        out_put(o, "[|arp], length %zu", len);
        return;
    }
    op = load16(p + 6);
    if (load16(p) != 1 || load16(p + 2) != 0x0800 || p[4] != 6 || p[5] != 4) {
        out_put(o, "hardware %u, protocol 0x%04x, op %u, length %zu", load16(p), load16(p + 2),
                op, len);
        return;
    }
    if (len < ARP_ETH_IP_LEN) {
        out_put(o, "op %u [|arp], length %zu", op, len);
        return;
    }
    if (op == 1) {
        out_put(o, "Request who-has ");
        out_ip(o, p + 24);
        out_put(o, " tell ");
        out_ip(o, p + 14);
    } else if (op == 2) {
        out_put(o, "Reply ");
        out_ip(o, p + 14);
        out_put(o, " is-at ");
        out_mac(o, p + 8);
    } else {
        out_put(o, "op %u", op);
    }
    out_put(o, ", length %zu", len);
}

/* ---- ICMP (RFC 792) --------------------------------------------------------- */

static const char *icmp_unreach_name(uint8_t code)
{
    static const char *const names[] = { "net", "host", "protocol", "port", "need-frag",
                                         "source-route" };

    return code < sizeof(names) / sizeof(names[0]) ? names[code] : NULL;
}

/* Destination unreachable: name what was unreachable from the quoted
 * header (ICMP header, then the original IP header and 8 bytes). */
static void fmt_icmp_unreach(struct out *o, const uint8_t *p, size_t len)
{
    const uint8_t *in = p + ICMP_HLEN;
    size_t inlen = len - ICMP_HLEN, ihl;
    const char *what = icmp_unreach_name(p[1]);

    if (len < ICMP_HLEN + IP_HLEN_MIN || (in[0] >> 4) != 4 || (ihl = (size_t)(in[0] & 0xf) * 4) < IP_HLEN_MIN ||
        ihl > inlen) {
        out_put(o, "ICMP unreachable, code %u", p[1]);
        return;
    }
    if (p[1] == 3 && (in[9] == 17 || in[9] == 6) && inlen >= ihl + 4) {
        out_put(o, "ICMP ");
        out_ip(o, in + 16);
        out_put(o, " %s port %u unreachable", in[9] == 17 ? "udp" : "tcp", load16(in + ihl + 2));
    } else if (p[1] == 2) {
        out_put(o, "ICMP ");
        out_ip(o, in + 16);
        out_put(o, " protocol %u unreachable", in[9]);
    } else if (p[1] == 4) {
        out_put(o, "ICMP ");
        out_ip(o, in + 16);
        out_put(o, " unreachable - need to frag (mtu %u)", load16(p + 6));
    } else {
        out_put(o, "ICMP %s ", what ? what : "");
        out_ip(o, in + 16);
        out_put(o, " unreachable, code %u", p[1]);
    }
}

static void fmt_icmp(struct out *o, const uint8_t *p, size_t len, size_t wire_len)
{
    if (len < 4) {
        out_put(o, "ICMP [|icmp], length %zu", wire_len);
        return;
    }
    switch (p[0]) {
    case 0:
    case 8:
        if (len < ICMP_HLEN) {
            out_put(o, "ICMP echo %s [|icmp]", p[0] ? "request" : "reply");
            break;
        }
        out_put(o, "ICMP echo %s, id %u, seq %u", p[0] ? "request" : "reply", load16(p + 4),
                load16(p + 6));
        break;
    case 3:
        if (len < ICMP_HLEN)
            out_put(o, "ICMP unreachable, code %u", p[1]);
        else
            fmt_icmp_unreach(o, p, len);
        break;
    case 11:
        out_put(o, "ICMP %s", p[1] == 0 ? "time exceeded in-transit"
                              : p[1] == 1 ? "ip reassembly time exceeded"
                                          : "time exceeded");
        break;
    default:
        out_put(o, "ICMP type %u, code %u", p[0], p[1]);
        break;
    }
    out_put(o, ", length %zu", wire_len);
}

/* ---- TCP header (RFC 9293 §3.1) ---------------------------------------------
 *  0 sport | 2 dport | 4 seq | 8 ack | 12 data offset | 13 flags | 14 window */

static void fmt_tcp_flags(struct out *o, uint8_t f)
{
    /* tcpdump's order and letters; "." is ACK */
    static const struct { uint8_t bit; char c; } flags[] = {
        { 0x01, 'F' }, { 0x02, 'S' }, { 0x04, 'R' }, { 0x08, 'P' },
        { 0x10, '.' }, { 0x20, 'U' }, { 0x40, 'E' }, { 0x80, 'W' },
    };
    char s[9];
    size_t n = 0;

    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (f & flags[i].bit)
            s[n++] = flags[i].c;
    s[n] = '\0';
    out_put(o, "Flags [%s]", n ? s : "none");
}

/* The options area opt[0..len): kind, length, value (RFC 9293 §3.2). */
static void fmt_tcp_options(struct out *o, const uint8_t *opt, size_t len)
{
    size_t i = 0;
    int first = 1;

    out_put(o, ", options [");
    while (i < len) {
        uint8_t kind = opt[i];
        size_t olen;

        out_put(o, "%s", first ? "" : ",");
        first = 0;
        if (kind == 0) { /* end of option list */
            out_put(o, "eol");
            break;
        }
        if (kind == 1) { /* no-operation */
            out_put(o, "nop");
            i++;
            continue;
        }
        if (i + 1 >= len || (olen = opt[i + 1]) < 2 || i + olen > len) {
            out_put(o, "bad opt");
            break;
        }
        if (kind == 2 && olen == 4)
            out_put(o, "mss %u", load16(opt + i + 2));
        else if (kind == 3 && olen == 3)
            out_put(o, "wscale %u", opt[i + 2]);
        else if (kind == 4 && olen == 2)
            out_put(o, "sackOK");
        else if (kind == 5 && (olen - 2) % 8 == 0)
            out_put(o, "sack %zu", (olen - 2) / 8);
        else if (kind == 8 && olen == 10)
            out_put(o, "TS val %u ecr %u", load32(opt + i + 2), load32(opt + i + 6));
        else
            out_put(o, "opt-%u:%zu", kind, olen);
        i += olen;
    }
    out_put(o, "]");
}

/* p/len: the captured bytes of the segment; seg_len: its length according
 * to the IP header (what tcpdump's "length" is computed from). */
static void fmt_tcp(struct out *o, const uint8_t *p, size_t len, size_t seg_len)
{
    size_t doff;
    uint32_t seq;

    if (len < TCP_HLEN_MIN) {
        out_put(o, "[|tcp]");
        return;
    }
    doff = (size_t)(p[12] >> 4) * 4;
    if (doff < TCP_HLEN_MIN || doff > seg_len) {
        out_put(o, "[bad hdr length %zu]", doff);
        return;
    }
    seq = load32(p + 4);
    fmt_tcp_flags(o, p[13]);
    if (seg_len > doff)
        out_put(o, ", seq %u:%u", seq, (uint32_t)(seq + (seg_len - doff)));
    else
        out_put(o, ", seq %u", seq);
    if (p[13] & 0x10)
        out_put(o, ", ack %u", load32(p + 8));
    out_put(o, ", win %u", load16(p + 14));
    if (doff > TCP_HLEN_MIN) {
        if (doff <= len)
            fmt_tcp_options(o, p + TCP_HLEN_MIN, doff - TCP_HLEN_MIN);
        else
            out_put(o, ", options [|tcp]");
    }
    out_put(o, ", length %zu", seg_len - doff);
}

/* ---- IPv4 (RFC 791) ----------------------------------------------------------
 *  0 version+ihl | 2 total length | 4 id | 6 flags+offset | 9 protocol |
 *  12 src | 16 dst */

static const char *ip_proto_name(uint8_t proto)
{
    switch (proto) {
    case 1: return "ICMP";
    case 6: return "TCP";
    case 17: return "UDP";
    default: return NULL;
    }
}

/* "a.b.c.d[.port] > e.f.g.h[.port]: " */
static void fmt_ip_addrs(struct out *o, const uint8_t *ip, int have_ports, uint16_t sport,
                         uint16_t dport)
{
    out_put(o, "IP ");
    out_ip(o, ip + 12);
    if (have_ports)
        out_put(o, ".%u", sport);
    out_put(o, " > ");
    out_ip(o, ip + 16);
    if (have_ports)
        out_put(o, ".%u", dport);
    out_put(o, ": ");
}

/* A fragment after the first: no transport header to decode. */
static void fmt_ip_fragment(struct out *o, const uint8_t *p, size_t plen, uint16_t frag)
{
    const char *name = ip_proto_name(p[9]);

    fmt_ip_addrs(o, p, 0, 0, 0);
    if (name)
        out_put(o, "%s fragment", name);
    else
        out_put(o, "ip-proto-%u fragment", p[9]);
    out_put(o, " id %u, offset %u, length %zu%s", load16(p + 4), (frag & 0x1fff) * 8u, plen,
            (frag & 0x2000) ? ", more fragments" : "");
}

/* The transport header of a first (or only) fragment. p/len: captured
 * bytes after the IP header; wire_len: payload length per the IP header. */
static void fmt_ip_payload(struct out *o, const uint8_t *ip, const uint8_t *p, size_t len,
                           size_t wire_len)
{
    uint8_t proto = ip[9];
    int ports = (proto == 6 || proto == 17) && len >= 4;

    fmt_ip_addrs(o, ip, ports, ports ? load16(p) : 0, ports ? load16(p + 2) : 0);
    if (proto == 1) {
        fmt_icmp(o, p, len, wire_len);
    } else if (proto == 17) {
        if (len < UDP_HLEN)
            out_put(o, "UDP [|udp]");
        else if (load16(p + 4) < UDP_HLEN)
            out_put(o, "UDP, bad length %u", load16(p + 4));
        else
            out_put(o, "UDP, length %u", load16(p + 4) - UDP_HLEN);
    } else if (proto == 6) {
        fmt_tcp(o, p, len, wire_len);
    } else {
        out_put(o, "ip-proto-%u, length %zu", proto, wire_len);
    }
}

static void fmt_ip(struct out *o, const uint8_t *p, size_t len)
{
    size_t ihl, total, cap;
    uint16_t frag;

    if (len < IP_HLEN_MIN) {
        out_put(o, "IP [|ip], length %zu", len);
        return;
    }
    if ((p[0] >> 4) != 4) {
        out_put(o, "IP version %u, length %zu", p[0] >> 4, len);
        return;
    }
    ihl = (size_t)(p[0] & 0xf) * 4;
    total = load16(p + 2);
    if (ihl < IP_HLEN_MIN || ihl > len || total < ihl) {
        out_put(o, "IP bad header (hlen %zu, total %zu), length %zu", ihl, total, len);
        return;
    }
    cap = total < len ? total : len; /* link padding after total is not ours */
    frag = load16(p + 6);
    if (frag & 0x1fff)
        fmt_ip_fragment(o, p, total - ihl, frag);
    else
        fmt_ip_payload(o, p, p + ihl, cap - ihl, total - ihl);
    if (frag & 0x2000 && !(frag & 0x1fff))
        out_put(o, " (frag id %u, more fragments)", load16(p + 4));
    if (total > len)
        out_put(o, " [truncated: %zu of %zu bytes]", len, total);
}

/* ---- entry points ------------------------------------------------------------- */

size_t pktlog_format_ip(const uint8_t *pkt, size_t len, char *buf, size_t size)
{
    struct out o = { buf, size, 0 };

    if (size)
        buf[0] = '\0';
    fmt_ip(&o, pkt, len);
    return o.n;
}

size_t pktlog_format(const uint8_t *frame, size_t len, char *buf, size_t size)
{
    struct out o = { buf, size, 0 };
    uint16_t type;

    if (size)
        buf[0] = '\0';
    if (len < ETH_HLEN) {
        out_put(&o, "[|ether], length %zu", len);
        return o.n;
    }
    type = load16(frame + 12);
    if (type == 0x0806)
        fmt_arp(&o, frame + ETH_HLEN, len - ETH_HLEN);
    else if (type == 0x0800)
        fmt_ip(&o, frame + ETH_HLEN, len - ETH_HLEN);
    else if (type == 0x86dd)
        out_put(&o, "IP6, length %zu", len - ETH_HLEN);
    else
        out_put(&o, "ethertype 0x%04x, length %zu", type, len);
    return o.n;
}
