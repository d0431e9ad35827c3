/*
 * pcap.c — the capture hook: every frame in and out of a device, appended
 * to a classic pcap file. See pcap.h for the format and where it sits.
 *
 * Entry points: pcap_attach (app setup, before net_run); pcap_frame (the
 * hook, on whichever thread moves the frame: RX thread, stack thread,
 * app threads); pcap_release (net_shutdown).
 *
 * Frames from several threads are written under one mutex, and the
 * timestamp is taken under it too, so records appear in the file in
 * timestamp order. A failed write is reported once, counted every time,
 * and never stops the frame: the capture is an observer.
 */
#include "driver/pcap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"
#include "util/mem.h"

static const char *const pcap_stat_names[PCAPSTAT_COUNT] = {
    [PCAPSTAT_FRAMES] = "frames",
    [PCAPSTAT_BYTES] = "bytes",
    [PCAPSTAT_WRITE_ERRORS] = "write_errors",
};
struct stats_group pcap_stats = STATS_GROUP("pcap", pcap_stat_names);

struct pcap_hook {
    struct net_device_hook hook; /* first: the hook's priv points back here */
    struct mutex lock;
    FILE *f;                     /* [lock] */
    int failed;                  /* [lock] a write failed (reported once) */
    char path[256];              /* [c] for messages */
};

/* Append one record. Called with p->lock held. */
static void pcap_write_locked(struct pcap_hook *p, const struct pbuf *pb)
{
    struct pcap_rec_hdr rec;
    int64_t sec;
    int32_t usec;
    size_t caplen = pb->len < PCAP_SNAPLEN ? pb->len : PCAP_SNAPLEN;

    platform_wallclock(&sec, &usec);
    rec.ts_sec = (uint32_t)sec;
    rec.ts_usec = (uint32_t)usec;
    rec.incl_len = (uint32_t)caplen;
    rec.orig_len = (uint32_t)pb->len;
    if (fwrite(&rec, sizeof(rec), 1, p->f) != 1 || fwrite(pb->data, 1, caplen, p->f) != caplen ||
        fflush(p->f) != 0) {
        STAT_INC(&pcap_stats, PCAPSTAT_WRITE_ERRORS);
        if (!p->failed)
            log_error(LOG_PCAP, "%s: write failed: %s (the capture is incomplete)", p->path,
                      strerror(errno));
        p->failed = 1;
        return;
    }
    STAT_INC(&pcap_stats, PCAPSTAT_FRAMES);
    stat_add(&pcap_stats, PCAPSTAT_BYTES, caplen);
}

static int pcap_frame(struct net_device_hook *h, enum net_dir dir, struct pbuf *pb)
{
    struct pcap_hook *p = h->priv;

    mutex_lock(&p->lock);
    pcap_write_locked(p, pb);
    mutex_unlock(&p->lock);
    log_trace(LOG_PCAP, "%s: %s %zu bytes", p->path, dir == NET_DIR_RX ? "rx" : "tx", pb->len);
    return net_hook_next(h, dir, pb);
}

static void pcap_release(struct net_device_hook *h)
{
    struct pcap_hook *p = h->priv;

    mutex_lock(&p->lock);
    if (fclose(p->f) != 0 && !p->failed)
        log_error(LOG_PCAP, "%s: close failed: %s", p->path, strerror(errno));
    p->f = NULL;
    mutex_unlock(&p->lock);
    log_info(LOG_PCAP, "%s: closed", p->path);
    mutex_destroy(&p->lock);
    mem_free(p);
}

static int pcap_write_header(FILE *f, uint32_t linktype)
{
    struct pcap_file_hdr hdr = {
        .magic = PCAP_MAGIC,
        .version_major = PCAP_VERSION_MAJOR,
        .version_minor = PCAP_VERSION_MINOR,
        .thiszone = 0,
        .sigfigs = 0,
        .snaplen = PCAP_SNAPLEN,
        .linktype = linktype,
    };

    if (fwrite(&hdr, sizeof(hdr), 1, f) != 1 || fflush(f) != 0)
        return errno ? -errno : -EIO;
    return 0;
}

int pcap_attach(struct net_device *dev, const char *path)
{
    uint32_t linktype = dev->type == NET_DEVICE_TYPE_ETHERNET ? PCAP_LINKTYPE_ETHERNET
                                                               : PCAP_LINKTYPE_RAW;
    struct pcap_hook *p = mem_calloc(1, sizeof(*p));
    int err;

    if (!p)
        return -ENOMEM;
    snprintf(p->path, sizeof(p->path), "%s", path);
    errno = 0;
    if (!(p->f = fopen(path, "wb"))) {
        err = errno ? -errno : -EIO;
        mem_free(p);
        return err;
    }
    if ((err = pcap_write_header(p->f, linktype)) < 0) {
        fclose(p->f);
        mem_free(p);
        return err;
    }
    mutex_init(&p->lock);
    p->hook = (struct net_device_hook){ .name = "pcap", .frame = pcap_frame,
                                        .release = pcap_release, .priv = p };
    if ((err = net_device_hook_add(dev, &p->hook)) < 0) {
        fclose(p->f);
        mutex_destroy(&p->lock);
        mem_free(p);
        return err;
    }
    stats_register(&pcap_stats);
    log_info(LOG_PCAP, "%s: capturing %s (linktype %u)", path, dev->name, linktype);
    return 0;
}
