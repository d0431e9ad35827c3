/*
 * platform.h — everything netstep needs from the operating system.
 *
 * Where it sits: below every other module. This folder is the only place
 * that includes <pthread.h>, <linux/if_tun.h> or <sys/capability.h>;
 * porting netstep to another OS means rewriting platform/<os>/ only.
 *
 * What it offers:
 *   - mutexes and condition variables (monotonic clock, absolute deadlines),
 *   - named threads,
 *   - a monotonic millisecond clock and a wall clock for log timestamps,
 *   - random bytes (for ISNs, ARP jitter, fault injection seeds),
 *   - the Linux tap device,
 *   - capability checks and dropping them (libcap).
 *
 * Error convention: 0 or a positive value on success, a negative errno
 * value on failure. Nothing here sets errno for the caller to read.
 */
#ifndef NETSTEP_PLATFORM_H
#define NETSTEP_PLATFORM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- mutex --------------------------------------------------------------
 * A plain (non-recursive) mutex that remembers its owner, so functions named
 * *_locked can assert that their caller holds it. */
struct mutex {
    pthread_mutex_t m;
    _Atomic(unsigned long) owner; /* thread id of the holder, 0 when free */
};

/* For mutexes with static storage: struct mutex m = MUTEX_INITIALIZER; */
#define MUTEX_INITIALIZER { .m = PTHREAD_MUTEX_INITIALIZER, .owner = 0 }

void mutex_init(struct mutex *mu);
void mutex_destroy(struct mutex *mu);
void mutex_lock(struct mutex *mu);
void mutex_unlock(struct mutex *mu);
/* Non-zero if the calling thread holds mu. For assertions only. */
int mutex_held(struct mutex *mu);

/* ---- condition variable ------------------------------------------------ */
struct cond {
    pthread_cond_t c;
};

void cond_init(struct cond *cv);
void cond_destroy(struct cond *cv);
/* Wait on cv, releasing mu meanwhile. Always call in a loop that re-checks
 * the condition: wake-ups may be spurious. */
void cond_wait(struct cond *cv, struct mutex *mu);
/* As cond_wait, but give up at deadline_ms on the monotonic clock
 * (platform_now_ms()). Returns 0 when woken, -ETIMEDOUT at the deadline. */
int cond_wait_until(struct cond *cv, struct mutex *mu, uint64_t deadline_ms);
void cond_signal(struct cond *cv);
void cond_broadcast(struct cond *cv);

/* ---- threads ----------------------------------------------------------- */
struct thread {
    pthread_t t;
    int started;
};

/* Start fn(arg) on a new thread called name (at most 15 characters are
 * kept). Returns 0 or -errno. */
int thread_create(struct thread *th, const char *name, void *(*fn)(void *), void *arg);
int thread_join(struct thread *th);
/* Name the calling thread (used by the log). */
void thread_set_name(const char *name);
/* Copy the calling thread's name into buf. */
void thread_get_name(char *buf, size_t size);
/* A small integer id of the calling thread (non-zero). */
unsigned long thread_self_id(void);

/* ---- time -------------------------------------------------------------- */
/* Milliseconds on a monotonic clock; never goes back. */
uint64_t platform_now_ms(void);
/* Microseconds on the same monotonic clock (RTT measurements). */
uint64_t platform_now_us(void);
/* Wall-clock time split for log lines and pcap timestamps. */
void platform_wallclock(int64_t *sec, int32_t *usec);
/* Sleep the calling thread. Only apps and tests use this; the stack never
 * sleeps, it waits on conditions. */
void platform_sleep_ms(unsigned ms);

/* ---- randomness -------------------------------------------------------- */
/* Fill buf with len bytes from the kernel's CSPRNG. */
void platform_random(void *buf, size_t len);

/* ---- tap --------------------------------------------------------------- */
/* Open the tap named name (creating it if absent and allowed).
 * On success returns the fd and stores whether the tap was created by us in
 * *created. On failure returns -errno. With vnet_hdr, every frame read or
 * written is preceded by a struct platform_vnet_hdr (IFF_VNET_HDR). */
int platform_tap_open(const char *name, int *created, int vnet_hdr);

/* The header a tap opened with vnet_hdr puts before each frame: Linux's
 * struct virtio_net_hdr, in host byte order. It says what the kernel
 * still has to do to a frame we write (or what it left undone in one we
 * read): complete a checksum, cut a TCP super-frame into segments. */
struct platform_vnet_hdr {
    uint8_t flags;        /* PLATFORM_VNET_F_* */
    uint8_t gso_type;     /* PLATFORM_VNET_GSO_* */
    uint16_t hdr_len;     /* Ethernet + IP + TCP header bytes of a super-frame */
    uint16_t gso_size;    /* TCP payload bytes per segment */
    uint16_t csum_start;  /* where the checksummed bytes start in the frame */
    uint16_t csum_offset; /* where the checksum goes, from csum_start */
};
#define PLATFORM_VNET_HDR_LEN 10
#define PLATFORM_VNET_F_NEEDS_CSUM 1 /* the checksum holds the pseudo-header sum only */
#define PLATFORM_VNET_F_DATA_VALID 2 /* the kernel checked the checksum already */
#define PLATFORM_VNET_GSO_NONE 0
#define PLATFORM_VNET_GSO_TCPV4 1
/* Let the kernel hand us frames with checksums left undone (csum) and TCP
 * super-frames (tso4) (TUNSETOFFLOAD). Returns 0 or -errno. */
int platform_tap_set_offload(int fd, int csum, int tso4);
/* Write a vnet header and a frame as one frame. Returns the bytes written
 * or -errno. */
int platform_tap_write_vnet(int fd, const struct platform_vnet_hdr *h, const void *buf, size_t len);
void platform_tap_close(int fd);
/* Wait up to timeout_ms for interface name to be operationally up (the
 * kernel drops frames written to a tap before that). Returns 0 when up,
 * -ETIMEDOUT otherwise. */
int platform_link_wait_up(const char *name, unsigned timeout_ms);
/* Bring the kernel side of interface name up (needs CAP_NET_ADMIN). */
int platform_link_set_up(const char *name);
/* Write one frame. Returns the length written or -errno. */
int platform_tap_write(int fd, const void *buf, size_t len);
/* A pipe that wakes a thread sleeping in platform_wait_fds. */
int platform_wakeup_open(int fds[2]);
void platform_wakeup_signal(int fds[2]);
void platform_wakeup_close(int fds[2]);
/* Read one frame if one is waiting, never blocking (the tap is opened
 * O_NONBLOCK): its length, 0 if none, or -errno. */
int platform_tap_read_nb(int fd, void *buf, size_t size);
/* As platform_tap_read_nb, but a frame longer than size goes on into
 * spill (readv): for super-frames, without a 64 KiB buffer per read. */
int platform_tap_read2_nb(int fd, void *buf, size_t size, void *spill, size_t spill_size);
/* Sleep until one of fds[0..n) is readable (ready[i] set to 1), the wakeup
 * pipe fires (drained here), or timeout_ms passes (-1: no limit). Returns
 * how many fds are readable, 0 on timeout or wakeup, or -errno. */
int platform_wait_fds(const int *fds, int n, int wake_fd, int timeout_ms, unsigned char *ready);

/* ---- capabilities ------------------------------------------------------ */
/* Non-zero if the process may open or create a tap (CAP_NET_ADMIN in its
 * effective set). */
int platform_can_admin_net(void);
/* Drop every capability in every set. Returns 0 or -errno. */
int platform_drop_capabilities(void);

#endif
