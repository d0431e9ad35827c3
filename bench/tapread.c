/*
 * tapread.c — the raw tap ceiling for `make bench` (not part of the stack:
 * this is the measuring stick).
 *
 *   tapread IFNAME SECONDS
 *       attach to the tap IFNAME (IFF_TAP | IFF_NO_PI), print "ready", and
 *       from the first frame on, read and count frames for SECONDS; print
 *       "frames N bytes B seconds S mb_s R" (MB = 1e6 bytes, frame bytes
 *       as read: Ethernet header and payload, no FCS).
 *
 * A single thread doing nothing but read(): no TCP receiver over a tap can
 * take frames out of the kernel faster than this. Gives up after SECONDS +
 * 10 s if no frame ever arrives.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct ifreq ifr;
    static char buf[65536];
    long frames = 0;
    long long bytes = 0;
    double secs, start = 0, end, give_up;
    int fd;

    if (argc != 3) {
        fprintf(stderr, "usage: tapread IFNAME SECONDS\n");
        return 2;
    }
    secs = atof(argv[2]);
    fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (fd < 0) {
        perror("tapread: /dev/net/tun");
        return 1;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        perror("tapread: TUNSETIFF");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    give_up = now() + secs + 10;
    end = give_up;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        double t = now();
        if (t >= end)
            break;
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            perror("tapread: read");
            return 1;
        }
        if (frames == 0) { /* the clock starts with the first frame */
            start = now();
            end = start + secs;
        }
        frames++;
        bytes += n;
        /* read without poll while frames keep coming */
        for (;;) {
            n = read(fd, buf, sizeof(buf));
            if (n <= 0)
                break;
            frames++;
            bytes += n;
            if (frames % 64 == 0 && now() >= end)
                break;
        }
    }
    if (frames == 0) {
        printf("frames 0 bytes 0 seconds 0 mb_s 0\n");
        return 1;
    }
    double el = now() - start;
    printf("frames %ld bytes %lld seconds %.3f mb_s %.1f\n", frames, bytes, el, (double)bytes / el / 1e6);
    return 0;
}
