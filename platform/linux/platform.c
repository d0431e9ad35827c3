/*
 * platform.c — Linux implementation of platform.h: pthreads, clocks,
 * getrandom, /dev/net/tun and libcap. See platform.h for the contract.
 */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- mutex ------------------------------------------------------------- */

void mutex_init(struct mutex *mu)
{
    pthread_mutex_init(&mu->m, NULL);
    atomic_store_explicit(&mu->owner, 0, memory_order_relaxed);
}

void mutex_destroy(struct mutex *mu)
{
    pthread_mutex_destroy(&mu->m);
}

void mutex_lock(struct mutex *mu)
{
    pthread_mutex_lock(&mu->m);
    atomic_store_explicit(&mu->owner, thread_self_id(), memory_order_relaxed);
}

void mutex_unlock(struct mutex *mu)
{
    atomic_store_explicit(&mu->owner, 0, memory_order_relaxed);
    pthread_mutex_unlock(&mu->m);
}

int mutex_held(struct mutex *mu)
{
    return atomic_load_explicit(&mu->owner, memory_order_relaxed) == thread_self_id();
}

/* ---- condition variables ----------------------------------------------- */

void cond_init(struct cond *cv)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cv->c, &attr);
    pthread_condattr_destroy(&attr);
}

void cond_destroy(struct cond *cv)
{
    pthread_cond_destroy(&cv->c);
}

void cond_wait(struct cond *cv, struct mutex *mu)
{
    atomic_store_explicit(&mu->owner, 0, memory_order_relaxed);
    pthread_cond_wait(&cv->c, &mu->m);
    atomic_store_explicit(&mu->owner, thread_self_id(), memory_order_relaxed);
}

int cond_wait_until(struct cond *cv, struct mutex *mu, uint64_t deadline_ms)
{
    struct timespec ts;
    int err;

    ts.tv_sec = (time_t)(deadline_ms / 1000);
    ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
    atomic_store_explicit(&mu->owner, 0, memory_order_relaxed);
    err = pthread_cond_timedwait(&cv->c, &mu->m, &ts);
    atomic_store_explicit(&mu->owner, thread_self_id(), memory_order_relaxed);
    return err == ETIMEDOUT ? -ETIMEDOUT : 0;
}

void cond_signal(struct cond *cv)
{
    pthread_cond_signal(&cv->c);
}

void cond_broadcast(struct cond *cv)
{
    pthread_cond_broadcast(&cv->c);
}

/* ---- threads ----------------------------------------------------------- */

struct thread_start {
    void *(*fn)(void *);
    void *arg;
    char name[16];
};

static _Atomic unsigned long next_thread_id = 1;
static _Thread_local unsigned long self_id;

unsigned long thread_self_id(void)
{
    if (self_id == 0)
        self_id = atomic_fetch_add(&next_thread_id, 1);
    return self_id;
}

/* The new thread names itself before it runs fn: naming it from here
 * instead would leave a window in which it logs under its creator's name. */
static void *thread_trampoline(void *p)
{
    struct thread_start st = *(struct thread_start *)p;

    free(p);
    if (st.name[0])
        pthread_setname_np(pthread_self(), st.name);
    return st.fn(st.arg);
}

int thread_create(struct thread *th, const char *name, void *(*fn)(void *), void *arg)
{
    struct thread_start *st;
    int err;

    th->started = 0;
    st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->fn = fn;
    st->arg = arg;
    if (name)
        snprintf(st->name, sizeof(st->name), "%s", name);
    err = pthread_create(&th->t, NULL, thread_trampoline, st);
    if (err) {
        free(st);
        return -err;
    }
    th->started = 1;
    return 0;
}

int thread_join(struct thread *th)
{
    if (!th->started)
        return -EINVAL;
    th->started = 0;
    return -pthread_join(th->t, NULL);
}

void thread_set_name(const char *name)
{
    char buf[16];

    snprintf(buf, sizeof(buf), "%s", name);
    pthread_setname_np(pthread_self(), buf);
}

void thread_get_name(char *buf, size_t size)
{
    if (pthread_getname_np(pthread_self(), buf, size) != 0)
        snprintf(buf, size, "?");
}

/* ---- time -------------------------------------------------------------- */

uint64_t platform_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t platform_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void platform_wallclock(int64_t *sec, int32_t *usec)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    *sec = ts.tv_sec;
    *usec = (int32_t)(ts.tv_nsec / 1000);
}

void platform_sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* ---- randomness -------------------------------------------------------- */

void platform_random(void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* getrandom cannot fail on Linux >= 3.17 short of EFAULT;
             * fall back to the clock so callers still get varied bytes. */
            uint64_t t = platform_now_ms() ^ (uint64_t)(uintptr_t)p;
            for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(t >> ((i % 8) * 8)) ^ (uint8_t)i;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

/* ---- tap --------------------------------------------------------------- */

int platform_tap_open(const char *name, int *created, int vnet_hdr)
{
    struct ifreq ifr;
    int fd, existed;
    char path[64];
    struct stat st;

    /* A tap exists if sysfs knows it; then TUNSETIFF attaches rather than
     * creates. We only use this to tell the user what happened. */
    snprintf(path, sizeof(path), "/sys/class/net/%s", name);
    existed = stat(path, &st) == 0;

    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK); /* the stack thread polls it */
    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (created)
        *created = !existed;
    return fd;
}

void platform_tap_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

int platform_link_wait_up(const char *name, unsigned timeout_ms)
{
    char path[96], state[16];
    uint64_t deadline = platform_now_ms() + timeout_ms;

    snprintf(path, sizeof(path), "/sys/class/net/%s/operstate", name);
    for (;;) {
        FILE *f = fopen(path, "re");
        int up = 0;
        if (f) {
            up = fgets(state, sizeof(state), f) && strncmp(state, "up", 2) == 0;
            fclose(f);
        }
        if (up)
            return 0;
        if (platform_now_ms() >= deadline)
            return -ETIMEDOUT;
        platform_sleep_ms(5);
    }
}

int platform_link_set_up(const char *name)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), err = 0;

    if (s < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        err = -errno;
    } else if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            err = -errno;
    }
    close(s);
    return err;
}

int platform_tap_read_nb(int fd, void *buf, size_t size)
{
    ssize_t n;

    do {
        n = read(fd, buf, size);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno;
    return (int)n;
}

int platform_tap_read2_nb(int fd, void *buf, size_t size, void *spill, size_t spill_size)
{
    struct iovec iov[2] = { { .iov_base = buf, .iov_len = size }, { .iov_base = spill, .iov_len = spill_size } };
    ssize_t n;

    do {
        n = readv(fd, iov, 2);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno;
    return (int)n;
}

int platform_wait_fds(const int *fds, int n, int wake_fd, int timeout_ms, unsigned char *ready)
{
    struct pollfd pfd[17];
    int ret, count = 0;

    if (n < 0 || n > 16)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
    pfd[n] = (struct pollfd){ .fd = wake_fd, .events = POLLIN };
    ret = poll(pfd, (nfds_t)n + 1, timeout_ms);
    if (ret < 0)
        return errno == EINTR ? 0 : -errno;
    if (pfd[n].revents & POLLIN) {
        char buf[64];
        while (read(wake_fd, buf, sizeof(buf)) > 0)
            ;
    }
    for (int i = 0; i < n; i++) {
        ready[i] = (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        count += ready[i];
    }
    return count;
}

int platform_tap_write(int fd, const void *buf, size_t len)
{
    ssize_t n;

    do {
        n = write(fd, buf, len);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (int)n;
}

_Static_assert(sizeof(struct platform_vnet_hdr) == sizeof(struct virtio_net_hdr) &&
                   sizeof(struct platform_vnet_hdr) == PLATFORM_VNET_HDR_LEN,
               "platform_vnet_hdr must be laid out as virtio_net_hdr");
_Static_assert(PLATFORM_VNET_F_NEEDS_CSUM == VIRTIO_NET_HDR_F_NEEDS_CSUM &&
                   PLATFORM_VNET_F_DATA_VALID == VIRTIO_NET_HDR_F_DATA_VALID &&
                   PLATFORM_VNET_GSO_TCPV4 == VIRTIO_NET_HDR_GSO_TCPV4,
               "vnet header constants");

int platform_tap_set_offload(int fd, int csum, int tso4)
{
    unsigned long off = (csum ? TUN_F_CSUM : 0) | (csum && tso4 ? TUN_F_TSO4 : 0);

    return ioctl(fd, TUNSETOFFLOAD, off) < 0 ? -errno : 0;
}

int platform_tap_write_vnet(int fd, const struct platform_vnet_hdr *h, const void *buf, size_t len)
{
    struct iovec iov[2] = {
        { .iov_base = (void *)h, .iov_len = PLATFORM_VNET_HDR_LEN },
        { .iov_base = (void *)buf, .iov_len = len },
    };
    ssize_t n;

    do {
        n = writev(fd, iov, 2);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (int)n;
}

int platform_wakeup_open(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

void platform_wakeup_signal(int fds[2])
{
    char c = 1;
    ssize_t n = write(fds[1], &c, 1);
    (void)n;
}

void platform_wakeup_close(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* ---- capabilities ------------------------------------------------------ */

int platform_can_admin_net(void)
{
    cap_t caps = cap_get_proc();
    cap_flag_value_t v = CAP_CLEAR;

    if (!caps)
        return 0;
    cap_get_flag(caps, CAP_NET_ADMIN, CAP_EFFECTIVE, &v);
    cap_free(caps);
    return v == CAP_SET;
}

int platform_drop_capabilities(void)
{
    cap_t caps = cap_init(); /* an empty set */
    int err = 0;

    if (!caps)
        return -errno;
    if (cap_set_proc(caps) < 0)
        err = -errno;
    cap_free(caps);
    return err;
}
