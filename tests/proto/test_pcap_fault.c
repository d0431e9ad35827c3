/*
 * test_pcap_fault.c — the device hooks (net.h), the capture (driver/pcap.c),
 * the fault injector (driver/fault.c) and the packet summaries
 * (util/pktlog.c), through the in-memory test device (testdev.h).
 *
 * Frames sent out (tx) go through net_device_transmit() and are read back
 * with test_take(); frames coming in (rx) are injected with test_inject()
 * and seen by a "recorder" hook put above the injector, which notes each
 * frame and passes it on. Test frames carry their index k in the last two
 * bytes of the Ethernet source address (never corrupted: the injector
 * damages only bytes after the link header) and a known pattern after the
 * header, so every outcome — lost, damaged, doubled, late — is visible.
 * Time is the virtual clock: a 100 ms delay takes no real time.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "driver/fault.h"
#include "driver/pcap.h"
#include "net.h"
#include "proto/ether.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "testdev.h"
#include "util/byteorder.h"
#include "util/pbuf.h"
#include "util/pktlog.h"
#include "util/stats.h"

#define TEST_TYPE 0x88b5 /* IEEE 802 local experimental EtherType */
#define MAXREC 1024
#define SEQ_FRAMES 400

struct frame {
    uint8_t b[ETHER_FRAME_SIZE_MAX];
    size_t len;
};

/* A hook that records what crosses it and passes it on. */
struct recorder {
    struct net_device_hook hook;
    char tag;
    size_t n;
    struct frame f[MAXREC];
    enum net_dir dir[MAXREC];
};

static struct recorder rec_a, rec_b;
static char order[64];   /* tags of the recorders in the order they ran */
static size_t norder;
static int releases;     /* recorder release() calls */
static long pbufs_before_up;

/* ---- helpers ------------------------------------------------------------- */

static int64_t counter(const char *name)
{
    int64_t v = stats_lookup(name);

    if (v < 0)
        fail_msg("no counter %s", name);
    return v;
}

static int recorder_frame(struct net_device_hook *h, enum net_dir dir, struct pbuf *pb)
{
    struct recorder *r = h->priv;

    if (r->n < MAXREC) {
        size_t len = pb->len < ETHER_FRAME_SIZE_MAX ? pb->len : ETHER_FRAME_SIZE_MAX;
        memcpy(r->f[r->n].b, pb->data, len);
        r->f[r->n].len = len;
        r->dir[r->n] = dir;
        r->n++;
    }
    if (norder < sizeof(order) - 1)
        order[norder++] = r->tag;
    return net_hook_next(h, dir, pb);
}

static void recorder_release(struct net_device_hook *h)
{
    (void)h;
    releases++;
}

static size_t recorded(const struct recorder *r, enum net_dir dir)
{
    size_t n = 0;

    for (size_t i = 0; i < r->n; i++)
        n += r->dir[i] == dir;
    return n;
}

static void recorder_add(struct recorder *r, char tag)
{
    memset(r, 0, sizeof(*r));
    r->tag = tag;
    r->hook = (struct net_device_hook){ .name = "recorder", .frame = recorder_frame,
                                        .release = recorder_release, .priv = r };
    assert_int_equal(net_device_hook_add(ts.dev, &r->hook), 0);
}

/* Test frame number k of len bytes, from src to dst. */
static size_t test_frame(struct frame *f, const uint8_t *dst, const uint8_t *src, unsigned k, size_t len)
{
    memcpy(f->b, dst, 6);
    memcpy(f->b + 6, src, 6);
    f->b[10] = (uint8_t)(k >> 8);
    f->b[11] = (uint8_t)k;
    store16(f->b + 12, TEST_TYPE);
    for (size_t i = ETHER_HDR_SIZE; i < len; i++)
        f->b[i] = (uint8_t)(k * 7 + i);
    return f->len = len;
}

static unsigned frame_index(const uint8_t *b)
{
    return (unsigned)b[10] << 8 | b[11];
}

/* Send test frame k out of the test device (through the tx hooks). */
static void send_frame(unsigned k, size_t len)
{
    struct frame f;

    test_frame(&f, TEST_PEER_MAC, TEST_OUR_MAC, k, len);
    assert_int_equal(net_device_transmit(ts.dev, pbuf_from(f.b, f.len)), 0);
}

static void inject_frame(unsigned k, size_t len)
{
    struct frame f;

    test_frame(&f, TEST_OUR_MAC, TEST_PEER_MAC, k, len);
    test_inject(f.b, f.len);
}

/* Take the next transmitted frame into f; 0 if there is none. */
static size_t take(struct frame *f)
{
    struct pbuf *pb = test_take();

    if (!pb)
        return f->len = 0;
    f->len = pb->len < sizeof(f->b) ? pb->len : sizeof(f->b);
    memcpy(f->b, pb->data, f->len);
    pbuf_free(pb);
    return f->len;
}

/* The index of the next transmitted frame, or -1. */
static int take_index(void)
{
    struct frame f;

    return take(&f) ? (int)frame_index(f.b) : -1;
}

/* An ICMP echo request from the peer, as a whole frame. */
static size_t echo_request(struct frame *f, uint16_t seq)
{
    uint8_t icmp[64];
    char data[56];

    memset(data, 'x', sizeof(data));
    size_t n = test_icmp_echo(icmp, ICMP_TYPE_ECHO, 0x1234, seq, data, sizeof(data));
    return f->len = test_ip_frame(f->b, IP_PROTOCOL_ICMP, ts.peer_ip, ts.our_ip, seq, 0, icmp, n);
}

static void attach_fault(const char *const *opts)
{
    struct fault_config c = { 0 };

    for (; *opts; opts += 2)
        assert_int_equal(fault_config_set(&c, opts[0], opts[1]), 0);
    assert_int_equal(fault_attach(ts.dev, &c), 0);
}

/* ---- fixtures -------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    stats_reset_all();
    norder = 0;
    releases = 0;
    pbufs_before_up = pbuf_outstanding();
    return teststack_up_resolved();
}

static int teardown(void **state)
{
    (void)state;
    teststack_down();
    /* shutdown frees every frame a hook still held */
    return pbuf_outstanding() == pbufs_before_up ? 0 : -1;
}

/* ---- hooks ------------------------------------------------------------------ */

static void test_hook_order(void **state)
{
    (void)state;
    recorder_add(&rec_a, 'a'); /* nearest the driver */
    recorder_add(&rec_b, 'b'); /* nearest the stack */
    inject_frame(1, 60);
    send_frame(2, 60);
    /* rx climbs from the driver: a then b; tx descends: b then a */
    assert_string_equal(order, "abba");
    assert_int_equal(take_index(), 2);
    assert_int_equal(rec_a.dir[0], NET_DIR_RX);
    assert_int_equal(rec_a.dir[1], NET_DIR_TX);
    teststack_down();
    assert_int_equal(releases, 2); /* both released at shutdown */
    assert_int_equal(teststack_up_resolved(), 0); /* for teardown */
}

static void test_hook_add_refused_once_running(void **state)
{
    (void)state;
    assert_int_equal(net_run(), 0); /* starts the stack thread */
    memset(&rec_a, 0, sizeof(rec_a));
    rec_a.hook = (struct net_device_hook){ .name = "late", .frame = recorder_frame, .priv = &rec_a };
    assert_int_equal(net_device_hook_add(ts.dev, &rec_a.hook), -EBUSY);
    assert_null(ts.dev->hook_upper);
}

/* ---- pcap ------------------------------------------------------------------- */

struct pcap_file {
    struct pcap_file_hdr hdr;
    size_t n;
    struct pcap_rec_hdr rec[16];
    struct frame f[16];
};

static void read_pcap(const char *path, struct pcap_file *p)
{
    FILE *fp = fopen(path, "rb");

    assert_non_null(fp);
    memset(p, 0, sizeof(*p));
    assert_int_equal(fread(&p->hdr, sizeof(p->hdr), 1, fp), 1);
    while (p->n < 16 && fread(&p->rec[p->n], sizeof(p->rec[0]), 1, fp) == 1) {
        assert_true(p->rec[p->n].incl_len <= sizeof(p->f[0].b));
        p->f[p->n].len = p->rec[p->n].incl_len;
        assert_int_equal(fread(p->f[p->n].b, 1, p->f[p->n].len, fp), p->f[p->n].len);
        p->n++;
    }
    fclose(fp);
}

static void temp_path(char *path, size_t size)
{
    int fd;

    snprintf(path, size, "/tmp/netstep-test-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

static void test_pcap_header_and_records(void **state)
{
    static struct pcap_file p;
    char path[64];
    struct frame req, reply;
    time_t before = time(NULL);

    (void)state;
    temp_path(path, sizeof(path));
    assert_int_equal(pcap_attach(ts.dev, path), 0);
    echo_request(&req, 1);
    test_inject(req.b, req.len);
    assert_true(take(&reply) > 0);
    read_pcap(path, &p);
    unlink(path);

    assert_int_equal(p.hdr.magic, 0xa1b2c3d4);
    assert_int_equal(p.hdr.version_major, 2);
    assert_int_equal(p.hdr.version_minor, 4);
    assert_int_equal(p.hdr.thiszone, 0);
    assert_int_equal(p.hdr.sigfigs, 0);
    assert_int_equal(p.hdr.snaplen, 65535);
    assert_int_equal(p.hdr.linktype, 1); /* LINKTYPE_ETHERNET */
    assert_int_equal(p.n, 2);            /* the request in, the reply out */
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(p.rec[i].incl_len, p.rec[i].orig_len);
        assert_true(p.rec[i].ts_usec < 1000000);
        assert_true(p.rec[i].ts_sec >= (uint32_t)before && p.rec[i].ts_sec <= (uint32_t)time(NULL));
    }
    assert_true((uint64_t)p.rec[1].ts_sec * 1000000 + p.rec[1].ts_usec >=
                (uint64_t)p.rec[0].ts_sec * 1000000 + p.rec[0].ts_usec);
    assert_int_equal(p.f[0].len, req.len);
    assert_memory_equal(p.f[0].b, req.b, req.len);
    assert_int_equal(p.f[1].len, reply.len);
    assert_memory_equal(p.f[1].b, reply.b, reply.len);
    assert_int_equal(counter("pcap.frames"), 2);
}

static void test_pcap_open_error(void **state)
{
    (void)state;
    assert_int_equal(pcap_attach(ts.dev, "/nonexistent-netstep-dir/x.pcap"), -ENOENT);
    assert_null(ts.dev->hook_upper); /* nothing half-attached */
}

/* Fault first, capture on top: rx frames are captured after the injector
 * dropped them (never), tx frames before it does (always). */
static void test_pcap_sees_what_the_stack_sees(void **state)
{
    static struct pcap_file p;
    static const char *const opts[] = { "drop", "1", "seed", "1", NULL };
    char path[64];
    struct frame f;

    (void)state;
    temp_path(path, sizeof(path));
    attach_fault(opts);
    assert_int_equal(pcap_attach(ts.dev, path), 0);
    inject_frame(1, 60);
    send_frame(2, 60);
    assert_int_equal(take(&f), 0); /* lost on the "wire" */
    read_pcap(path, &p);
    unlink(path);
    assert_int_equal(p.n, 1);
    assert_int_equal(frame_index(p.f[0].b), 2);
    assert_memory_equal(p.f[0].b, TEST_PEER_MAC, 6); /* the tx frame */
}

/* ---- fault injection: reproducibility and counters ---------------------------- */

struct outcome {
    int copies;       /* how many came out */
    int corrupt_at;   /* offset of the damaged byte, or -1 */
};

/* Which byte of frame k differs from what was sent, or -1. */
static int damaged_byte(const struct frame *f, unsigned k)
{
    struct frame orig;

    test_frame(&orig, f->b, f->b + 6, k, f->len);
    for (size_t i = 0; i < f->len; i++)
        if (orig.b[i] != f->b[i])
            return (int)i;
    return -1;
}

static void note(struct outcome *o, const struct frame *f)
{
    unsigned k = frame_index(f->b);

    assert_true(k < SEQ_FRAMES);
    o[k].copies++;
    o[k].corrupt_at = damaged_byte(f, k);
}

/* Bring a stack up with the injector seeded with seed, push SEQ_FRAMES
 * frames each way, and record what became of each. */
static void run_sequence(uint64_t seed, struct outcome *rx, struct outcome *tx)
{
    char s[32];
    const char *opts[] = { "drop", "0.2", "corrupt", "0.2", "duplicate", "0.2", "reorder", "0.1",
                           "seed", s, NULL };
    struct frame f;

    snprintf(s, sizeof(s), "%llu", (unsigned long long)seed);
    for (unsigned k = 0; k < SEQ_FRAMES; k++)
        rx[k] = tx[k] = (struct outcome){ 0, -1 };
    assert_int_equal(teststack_up_resolved(), 0);
    attach_fault(opts);
    recorder_add(&rec_a, 'a');
    for (unsigned k = 0; k < SEQ_FRAMES; k++) {
        inject_frame(k, 60 + k % 200);
        send_frame(k, 60 + k % 200);
    }
    test_advance(FAULT_REORDER_HOLD_MS); /* the last frames held for reordering */
    while (take(&f))
        note(tx, &f);
    for (size_t i = 0; i < rec_a.n; i++)
        if (rec_a.dir[i] == NET_DIR_RX)
            note(rx, &rec_a.f[i]);

    /* the counters say exactly what the frames show */
    for (int d = 0; d < 2; d++) {
        struct outcome *o = d ? tx : rx;
        int64_t lost = 0, doubled = 0, damaged = 0;
        for (unsigned k = 0; k < SEQ_FRAMES; k++) {
            lost += o[k].copies == 0;
            doubled += o[k].copies == 2;
            damaged += o[k].copies && o[k].corrupt_at >= 0;
            if (o[k].corrupt_at >= 0)
                assert_true(o[k].corrupt_at >= ETHER_HDR_SIZE);
        }
        assert_int_equal(stat_read(&fault_stats, FAULTSTAT_INDEX(d, FAULTSTAT_FRAMES)), SEQ_FRAMES);
        assert_int_equal(stat_read(&fault_stats, FAULTSTAT_INDEX(d, FAULTSTAT_DROPPED)), lost);
        assert_int_equal(stat_read(&fault_stats, FAULTSTAT_INDEX(d, FAULTSTAT_DUPLICATED)), doubled);
        assert_int_equal(stat_read(&fault_stats, FAULTSTAT_INDEX(d, FAULTSTAT_CORRUPTED)), damaged);
        /* about 20% each (binomial, n=400: far inside 10..30%) */
        assert_true(lost > 40 && lost < 120);
        assert_true(doubled > 25 && doubled < 100);
        assert_true(stat_read(&fault_stats, FAULTSTAT_INDEX(d, FAULTSTAT_REORDERED)) > 10);
    }
    teststack_down();
}

static void test_same_seed_same_faults(void **state)
{
    static struct outcome rx1[SEQ_FRAMES], tx1[SEQ_FRAMES], rx2[SEQ_FRAMES], tx2[SEQ_FRAMES];

    (void)state;
    teststack_down(); /* each run brings its own stack up */
    run_sequence(7, rx1, tx1);
    run_sequence(7, rx2, tx2);
    assert_memory_equal(rx1, rx2, sizeof(rx1));
    assert_memory_equal(tx1, tx2, sizeof(tx1));
    /* another seed, another sequence; and rx and tx have their own streams */
    run_sequence(8, rx2, tx2);
    assert_memory_not_equal(rx1, rx2, sizeof(rx1));
    assert_memory_not_equal(tx1, tx2, sizeof(tx1));
    assert_memory_not_equal(rx1, tx1, sizeof(rx1));
    assert_int_equal(teststack_up_resolved(), 0); /* for teardown */
}

/* ---- fault injection: each fault on its own ----------------------------------- */

static void test_drop_all(void **state)
{
    static const char *const opts[] = { "drop", "1", "seed", "1", NULL };
    struct frame f;

    (void)state;
    attach_fault(opts);
    for (unsigned k = 0; k < 50; k++) {
        echo_request(&f, (uint16_t)k);
        test_inject(f.b, f.len);
        send_frame(k, 60);
    }
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("icmp.in_echos"), 0); /* the stack saw none */
    assert_int_equal(stat_read(&ts.dev->stats, DEVSTAT_RX_FRAMES), 50); /* the device did */
    assert_int_equal(counter("fault.rx_dropped"), 50);
    assert_int_equal(counter("fault.tx_dropped"), 50);
    assert_int_equal(counter("fault.rx_frames"), 50);
}

static void test_duplicate(void **state)
{
    static const char *const opts[] = { "duplicate", "1", "seed", "1", NULL };
    struct frame f, g, req;

    (void)state;
    attach_fault(opts);
    for (unsigned k = 0; k < 10; k++)
        send_frame(k, 100);
    for (unsigned k = 0; k < 10; k++) {
        assert_int_equal(take(&f), 100);
        assert_int_equal(take(&g), 100);
        assert_int_equal(frame_index(f.b), k);
        assert_memory_equal(f.b, g.b, 100);
    }
    assert_int_equal(counter("fault.tx_duplicated"), 10);
    /* one request in, seen twice by the stack: two replies, each doubled */
    echo_request(&req, 1);
    test_inject(req.b, req.len);
    assert_int_equal(counter("icmp.in_echos"), 2);
    assert_int_equal(test_sent_count(), 4);
    assert_int_equal(counter("fault.rx_duplicated"), 1);
}

static void test_corrupt(void **state)
{
    static const char *const opts[] = { "corrupt", "1", "seed", "3", NULL };
    struct frame f;

    (void)state;
    attach_fault(opts);
    for (unsigned k = 0; k < 20; k++) {
        send_frame(k, 100);
        assert_int_equal(take(&f), 100);
        int at = damaged_byte(&f, k);
        assert_true(at >= ETHER_HDR_SIZE); /* the Ethernet header is spared */
        f.b[at] = 0;                       /* exactly one byte differs */
        struct frame orig;
        test_frame(&orig, TEST_PEER_MAC, TEST_OUR_MAC, k, 100);
        orig.b[at] = 0;
        assert_memory_equal(f.b, orig.b, 100);
    }
    /* damaged echo requests reach IP, whose checksums stop every one */
    for (unsigned k = 0; k < 20; k++) {
        echo_request(&f, (uint16_t)k);
        test_inject(f.b, f.len);
    }
    assert_int_equal(counter("fault.rx_corrupted"), 20);
    assert_int_equal(test_sent_count(), 0); /* no reply to any of them */
    assert_int_equal(counter("icmp.out_echo_replies"), 0);
    assert_int_equal(counter("fault.tx_corrupted"), 20);
}

static void test_delay(void **state)
{
    static const char *const opts[] = { "delay", "tx:100", "delay", "rx:30", "seed", "1", NULL };

    (void)state;
    attach_fault(opts);
    recorder_add(&rec_a, 'a');
    for (unsigned k = 0; k < 3; k++)
        send_frame(k, 60);
    inject_frame(9, 60);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(recorded(&rec_a, NET_DIR_RX), 0);
    test_advance(29);
    assert_int_equal(recorded(&rec_a, NET_DIR_RX), 0);
    test_advance(1);
    assert_int_equal(recorded(&rec_a, NET_DIR_RX), 1); /* rx: 30 ms */
    test_advance(69);
    assert_int_equal(test_sent_count(), 0);
    test_advance(1);
    assert_int_equal(test_sent_count(), 3); /* tx: 100 ms, in order */
    for (int k = 0; k < 3; k++)
        assert_int_equal(take_index(), k);
    assert_int_equal(counter("fault.tx_delayed"), 3);
    assert_int_equal(counter("fault.rx_delayed"), 1);
}

static void test_delay_jitter(void **state)
{
    static const char *const opts[] = { "delay", "tx:50:50", "seed", "5", NULL };
    int seen[20] = { 0 };

    (void)state;
    attach_fault(opts);
    for (unsigned k = 0; k < 20; k++)
        send_frame(k, 60);
    test_advance(49);
    assert_int_equal(test_sent_count(), 0); /* none before the fixed part */
    test_advance(51);
    assert_int_equal(test_sent_count(), 20); /* all by delay + jitter */
    for (int i = 0; i < 20; i++) {
        int k = take_index();
        assert_true(k >= 0 && k < 20);
        seen[k]++;
    }
    for (int k = 0; k < 20; k++)
        assert_int_equal(seen[k], 1);
}

static void test_reorder(void **state)
{
    static const char *const opts[] = { "reorder", "tx:1", "seed", "1", NULL };
    static const int expect[] = { 1, 0, 3, 2, 5, 4 };

    (void)state;
    attach_fault(opts);
    for (unsigned k = 0; k < 7; k++)
        send_frame(k, 60);
    assert_int_equal(test_sent_count(), 6); /* frame 6 waits for a successor */
    for (int i = 0; i < 6; i++)
        assert_int_equal(take_index(), expect[i]);
    test_advance(FAULT_REORDER_HOLD_MS - 1);
    assert_int_equal(test_sent_count(), 0);
    test_advance(1);
    assert_int_equal(take_index(), 6); /* none came: released anyway */
    assert_int_equal(counter("fault.tx_reordered"), 4);
}

static void test_rate_limit(void **state)
{
    static const char *const opts[] = { "rate", "tx:10", "seed", "1", NULL };

    (void)state;
    attach_fault(opts);
    for (unsigned k = 0; k < 25; k++)
        send_frame(k, 60);
    assert_int_equal(test_sent_count(), 10); /* a full bucket: one second's worth */
    assert_int_equal(counter("fault.tx_rate_dropped"), 15);
    test_flush();
    test_advance(500); /* refills 5 tokens */
    for (unsigned k = 0; k < 10; k++)
        send_frame(k, 60);
    assert_int_equal(test_sent_count(), 5);
    test_flush();
    test_advance(5000); /* the bucket holds at most 10 */
    for (unsigned k = 0; k < 15; k++)
        send_frame(k, 60);
    assert_int_equal(test_sent_count(), 10);
    assert_int_equal(counter("fault.tx_rate_dropped"), 15 + 5 + 5);
}

static void test_size_limit(void **state)
{
    static const char *const opts[] = { "size-limit", "100", "seed", "1", NULL };

    (void)state;
    attach_fault(opts);
    send_frame(0, 60);
    send_frame(1, 100);
    send_frame(2, 101);
    send_frame(3, ETHER_FRAME_SIZE_MAX);
    assert_int_equal(take_index(), 0);
    assert_int_equal(take_index(), 1);
    assert_int_equal(take_index(), -1);
    assert_int_equal(counter("fault.tx_size_dropped"), 2);
}

static void test_held_bound(void **state)
{
    struct fault_config c = { .held_max = 4 };

    (void)state;
    assert_int_equal(fault_config_set(&c, "delay", "tx:100"), 0);
    assert_int_equal(fault_config_set(&c, "seed", "1"), 0);
    assert_int_equal(fault_attach(ts.dev, &c), 0);
    for (unsigned k = 0; k < 10; k++)
        send_frame(k, 60);
    assert_int_equal(counter("fault.tx_delayed"), 4);
    assert_int_equal(counter("fault.tx_held_overflow"), 6);
    test_advance(100);
    assert_int_equal(test_sent_count(), 4);
    /* frames still held at shutdown are freed: teardown checks */
    for (unsigned k = 0; k < 4; k++)
        send_frame(k, 60);
}

static void test_options(void **state)
{
    struct fault_config c = { 0 };

    (void)state;
    assert_false(fault_config_active(&c));
    assert_int_equal(fault_config_set(&c, "drop", "0.25"), 0);
    assert_true(c.dir[NET_DIR_RX].drop == 0.25 && c.dir[NET_DIR_TX].drop == 0.25);
    assert_int_equal(fault_config_set(&c, "drop", "rx:0.1"), 0);
    assert_true(c.dir[NET_DIR_RX].drop == 0.1 && c.dir[NET_DIR_TX].drop == 0.25);
    assert_int_equal(fault_config_set(&c, "corrupt", "tx:5%"), 0);
    assert_true(c.dir[NET_DIR_TX].corrupt == 0.05 && c.dir[NET_DIR_RX].corrupt == 0);
    assert_int_equal(fault_config_set(&c, "delay", "tx:100:20"), 0);
    assert_int_equal(c.dir[NET_DIR_TX].delay_ms, 100);
    assert_int_equal(c.dir[NET_DIR_TX].jitter_ms, 20);
    assert_int_equal(c.dir[NET_DIR_RX].delay_ms, 0);
    assert_int_equal(fault_config_set(&c, "rate", "1000"), 0);
    assert_int_equal(fault_config_set(&c, "size-limit", "rx:576"), 0);
    assert_int_equal(c.dir[NET_DIR_RX].size_limit, 576);
    assert_int_equal(fault_config_set(&c, "seed", "18446744073709551615"), 0);
    assert_true(c.seeded && c.seed == UINT64_MAX);
    assert_true(fault_config_active(&c));
    /* nonsense is refused and changes nothing */
    struct fault_config before = c;
    static const char *const bad[][2] = {
        { "drop", "1.5" }, { "drop", "-0.1" }, { "drop", "" }, { "drop", "x" },
        { "drop", "up:0.1" }, { "drop", "0.1x" }, { "delay", "10:" }, { "delay", "-5" },
        { "delay", "99999999" }, { "rate", "0x10" }, { "rate", "" }, { "seed", "-1" },
        { "seed", "12a" }, { "reorder", "nan" }, { "bogus", "1" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fault_config_set(&c, bad[i][0], bad[i][1]) != -EINVAL)
            fail_msg("--%s %s accepted", bad[i][0], bad[i][1]);
    }
    assert_memory_equal(&c, &before, sizeof(c));
}

/* ---- packet summaries ----------------------------------------------------------- */

static const char *summary(const uint8_t *b, size_t len)
{
    static char line[256];

    pktlog_format(b, len, line, sizeof(line));
    return line;
}

static void test_pktlog_lines(void **state)
{
    struct frame f;
    uint8_t icmp[16], seg[40], arp[28] = { 0, 1, 8, 0, 6, 4, 0, 1 };

    (void)state;
    memcpy(arp + 8, TEST_PEER_MAC, 6);
    memcpy(arp + 14, &ts.peer_ip, 4);
    memcpy(arp + 24, &ts.our_ip, 4);
    test_eth_frame(f.b, ETHER_ADDR_BROADCAST, TEST_PEER_MAC, ETHER_TYPE_ARP, arp, sizeof(arp));
    assert_string_equal(summary(f.b, 42), "ARP, Request who-has 192.0.2.2 tell 192.0.2.1, length 28");
    arp[7] = 2;
    test_eth_frame(f.b, TEST_OUR_MAC, TEST_PEER_MAC, ETHER_TYPE_ARP, arp, sizeof(arp));
    assert_string_equal(summary(f.b, 42), "ARP, Reply 192.0.2.1 is-at 02:00:00:00:00:01, length 28");

    size_t n = test_icmp_echo(icmp, ICMP_TYPE_ECHO, 1, 1, "abcdefgh", 8);
    f.len = test_ip_frame(f.b, IP_PROTOCOL_ICMP, ts.peer_ip, ts.our_ip, 1, 0, icmp, n);
    assert_string_equal(summary(f.b, f.len),
                        "IP 192.0.2.1 > 192.0.2.2: ICMP echo request, id 1, seq 1, length 16");

    memset(seg, 0, sizeof(seg));
    store16(seg, 5000);
    store16(seg + 2, 7);
    store16(seg + 4, 8 + 12);
    f.len = test_ip_frame(f.b, IP_PROTOCOL_UDP, ts.peer_ip, ts.our_ip, 2, 0, seg, 20);
    assert_string_equal(summary(f.b, f.len), "IP 192.0.2.1.5000 > 192.0.2.2.7: UDP, length 12");

    /* TCP SYN with mss 1460, then a SYN-ACK, then data with PSH+ACK */
    memset(seg, 0, sizeof(seg));
    store16(seg, 5000);
    store16(seg + 2, 7);
    store32(seg + 4, 1234);
    seg[12] = 6 << 4;
    seg[13] = 0x02;
    store16(seg + 14, 64240);
    seg[20] = 2, seg[21] = 4, store16(seg + 22, 1460);
    f.len = test_ip_frame(f.b, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 3, 0, seg, 24);
    assert_string_equal(summary(f.b, f.len),
                        "IP 192.0.2.1.5000 > 192.0.2.2.7: Flags [S], seq 1234, win 64240, options [mss 1460], length 0");
    seg[13] = 0x12;
    store32(seg + 8, 99);
    f.len = test_ip_frame(f.b, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 3, 0, seg, 24);
    assert_string_equal(summary(f.b, f.len),
                        "IP 192.0.2.1.5000 > 192.0.2.2.7: Flags [S.], seq 1234, ack 99, win 64240, options [mss 1460], length 0");
    seg[12] = 5 << 4;
    seg[13] = 0x18;
    f.len = test_ip_frame(f.b, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 3, 0, seg, 30);
    assert_string_equal(summary(f.b, f.len),
                        "IP 192.0.2.1.5000 > 192.0.2.2.7: Flags [P.], seq 1234:1244, ack 99, win 64240, length 10");
    seg[13] = 0x11;
    f.len = test_ip_frame(f.b, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 3, 0, seg, 20);
    assert_string_equal(summary(f.b, f.len),
                        "IP 192.0.2.1.5000 > 192.0.2.2.7: Flags [F.], seq 1234, ack 99, win 64240, length 0");
    seg[13] = 0x04;
    f.len = test_ip_frame(f.b, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 3, 0, seg, 20);
    assert_string_equal(summary(f.b, f.len),
                        "IP 192.0.2.1.5000 > 192.0.2.2.7: Flags [R], seq 1234, win 64240, length 0");
}

/* Every prefix of a frame, into every small buffer: no overrun (ASan),
 * always a terminated string that fits. */
static void test_pktlog_truncated(void **state)
{
    struct frame f;
    uint8_t seg[40] = { 0 };
    char buf[301];

    (void)state;
    seg[12] = 10 << 4; /* 40-byte header: 20 bytes of options */
    seg[13] = 0x02;
    seg[20] = 2, seg[21] = 4, seg[24] = 3, seg[25] = 3, seg[26] = 7, seg[27] = 1, seg[28] = 8,
    seg[29] = 10;
    f.len = test_ip_frame(f.b, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 3, 0, seg, 40);
    for (size_t len = 0; len <= f.len; len++) {
        for (size_t size = 0; size < sizeof(buf); size += (size < 8 ? 1 : 37)) {
            memset(buf, 'Z', sizeof(buf));
            size_t n = pktlog_format(f.b, len, buf, size);
            assert_int_equal(buf[size], 'Z'); /* nothing written past size */
            if (size == 0)
                continue;
            assert_true(n < size);
            assert_int_equal(strlen(buf), n);
        }
    }
    assert_string_equal(summary(f.b, 10), "[|ether], length 10");
    assert_string_equal(summary(f.b, 20), "IP [|ip], length 6");
    assert_string_equal(summary(f.b, 40),
                        "IP 192.0.2.1.0 > 192.0.2.2.0: [|tcp] [truncated: 26 of 60 bytes]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hook_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_add_refused_once_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_header_and_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_open_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pcap_sees_what_the_stack_sees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_seed_same_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_jitter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reorder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pktlog_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pktlog_truncated, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
