/*
 * udpbench.c — kernel-socket UDP tools for `make bench` (not part of the
 * stack: this is the measuring stick).
 *
 *   udpbench server PORT
 *       echo every datagram back (a kernel-side RFC 862 echo server)
 *   udpbench client ADDR PORT SIZE SECONDS WINDOW
 *       keep WINDOW datagrams of SIZE bytes in flight to an echo server for
 *       SECONDS; print "round_trips N per_s R lost L"
 *   udpbench blast ADDR PORT SIZE SECONDS
 *       send datagrams of SIZE bytes as fast as the kernel takes them, for
 *       SECONDS (sendmmsg, 32 at a time); print "sent N". The load for the
 *       raw tap ceiling (bench/tapread.c).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int server(int port)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    static char buf[65536];

    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("udpbench server");
        return 1;
    }
    for (;;) {
        struct sockaddr_in p;
        socklen_t pl = sizeof(p);
        ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&p, &pl);
        if (n >= 0)
            sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&p, pl);
    }
}

static int client(const char *addr, int port, size_t size, double secs, int window)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
    static char buf[65536];
    long done = 0, lost = 0;
    int inflight = 0;
    double end;

    inet_pton(AF_INET, addr, &a.sin_addr);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("udpbench client");
        return 1;
    }
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(buf, 'x', size);
    /* warm up ARP and caches */
    send(s, buf, size, 0);
    recv(s, buf, sizeof(buf), 0);
    end = now() + secs;
    double start = now();
    while (now() < end) {
        while (inflight < window) {
            if (send(s, buf, size, 0) < 0)
                break;
            inflight++;
        }
        if (recv(s, buf, sizeof(buf), 0) < 0) {
            lost += inflight; /* a timeout: count what was outstanding as lost */
            inflight = 0;
            continue;
        }
        inflight--;
        done++;
    }
    double el = now() - start;
    printf("round_trips %ld per_s %.0f lost %ld\n", done, (double)done / el, lost);
    return 0;
}

static int blast(const char *addr, int port, size_t size, double secs)
{
    enum { BATCH = 32 };
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    static char buf[65536];
    struct mmsghdr msgs[BATCH];
    struct iovec iov = { .iov_base = buf, .iov_len = size };
    long sent = 0;
    double end;

    inet_pton(AF_INET, addr, &a.sin_addr);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("udpbench blast");
        return 1;
    }
    memset(buf, 'x', size);
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    end = now() + secs;
    while (now() < end) {
        int n = sendmmsg(s, msgs, BATCH, 0);
        if (n > 0)
            sent += n;
    }
    printf("sent %ld\n", sent);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        return server(atoi(argv[2]));
    if (argc == 7 && strcmp(argv[1], "client") == 0)
        return client(argv[2], atoi(argv[3]), (size_t)atoi(argv[4]), atof(argv[5]), atoi(argv[6]));
    if (argc == 6 && strcmp(argv[1], "blast") == 0)
        return blast(argv[2], atoi(argv[3]), (size_t)atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: udpbench server PORT | client ADDR PORT SIZE SECONDS WINDOW"
                    " | blast ADDR PORT SIZE SECONDS\n");
    return 2;
}
