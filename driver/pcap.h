/*
 * pcap.h — capture every frame a device carries into a pcap file that
 * Wireshark, tshark and tcpdump read (`--pcap FILE` on every app).
 *
 * The capture is a device hook (net.h): attach it after any fault injector
 * so it sits on top of the chain, next to the stack, and records what the
 * stack really sees — received frames after the "wire" damaged them, sent
 * frames before it does:
 *
 *     stack <-> [pcap] <-> [fault] <-> driver
 *
 * File format: classic libpcap (magic 0xa1b2c3d4 in host byte order,
 * version 2.4, microsecond timestamps, snaplen 65535), LINKTYPE_ETHERNET
 * for Ethernet devices and LINKTYPE_RAW (IPv4 with no link header) for
 * loopback. Each record is flushed as it is written, so the file can be
 * read while the program runs; it is closed by net_shutdown().
 */
#ifndef NETSTEP_DRIVER_PCAP_H
#define NETSTEP_DRIVER_PCAP_H

#include "net.h"

#define PCAP_MAGIC 0xa1b2c3d4u
#define PCAP_VERSION_MAJOR 2
#define PCAP_VERSION_MINOR 4
#define PCAP_SNAPLEN 65535
#define PCAP_LINKTYPE_ETHERNET 1
#define PCAP_LINKTYPE_RAW 101

/* The file header and the header of each record, in host byte order. */
struct pcap_file_hdr {
    uint32_t magic;
    uint16_t version_major;
    uint16_t version_minor;
    int32_t thiszone; /* GMT offset of the timestamps: 0 (they are UTC) */
    uint32_t sigfigs; /* 0 */
    uint32_t snaplen;
    uint32_t linktype;
};

struct pcap_rec_hdr {
    uint32_t ts_sec;
    uint32_t ts_usec;
    uint32_t incl_len; /* bytes saved in the file */
    uint32_t orig_len; /* bytes of the frame */
};

enum pcap_stat {
    PCAPSTAT_FRAMES,       /* records written */
    PCAPSTAT_BYTES,        /* frame bytes written */
    PCAPSTAT_WRITE_ERRORS, /* records lost to a failed write */
    PCAPSTAT_COUNT
};
extern struct stats_group pcap_stats;

/* Create (or truncate) path, write the file header and hook dev so every
 * frame it sends and receives is appended. Call before net_run(). Returns
 * 0, or -errno (the file cannot be created, -EBUSY after net_run). */
int pcap_attach(struct net_device *dev, const char *path);

#endif
