/*
 * tcpbench.c — kernel-socket TCP tools for `make bench` (not part of the
 * stack: this is the measuring stick). MB = 1e6 bytes. Every client gives
 * up at its MAXSECS deadline and says so ("complete 0").
 *
 *   tcpbench sink PORT
 *       accept connections one after another; read each until EOF, close
 *       (prints "listening" when ready, as echoserver does)
 *   tcpbench echoserver PORT
 *       RFC 862 echo, a thread per connection with a 16 KiB buffer (the
 *       same shape as netstep's echo-server)
 *   tcpbench source ADDR PORT BYTES MAXSECS
 *       send BYTES, shut down, wait for the peer's close; print
 *       "bytes B seconds S mb_s R complete C". At the deadline, B is what
 *       the peer acknowledged (TCP_INFO), and the connection is reset.
 *   tcpbench read ADDR PORT MAXSECS
 *       read until EOF (chargen); print the same line
 *   tcpbench echo ADDR PORT BYTES MAXSECS
 *       a sender thread writes BYTES while this thread reads them back;
 *       print "bytes B seconds S mb_s R complete C" (S: first byte sent to
 *       last byte back)
 *   tcpbench cps ADDR PORT SIZE SECONDS
 *       for SECONDS: connect, send SIZE bytes, read them back, close;
 *       print "conns N per_s R failed F"
 *   tcpbench conns ADDR PORT N SIZE ROUNDS MAXSECS
 *       open N connections, print "opened N seconds S", wait for a line on
 *       stdin; then ROUNDS times send SIZE bytes on every connection and
 *       read them all back; print "echoes E seconds S per_s R", wait for a
 *       line on stdin, close everything
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_timeouts(int s, int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void reset_close(int s)
{
    struct linger l = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(s);
}

static int listener(int port)
{
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

    if (s < 0)
        return -1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1024) < 0) {
        perror("tcpbench: listen");
        exit(1);
    }
    return s;
}

/* A connected socket with 1 s timeouts, or -1. connect_ms bounds the
 * handshake (a lost SYN costs the kernel's 1 s retransmission timeout). */
static int dial_ms(const char *addr, int port, int connect_ms)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int s = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, addr, &a.sin_addr);
    if (s < 0)
        return -1;
    set_timeouts(s, connect_ms);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(s);
        return -1;
    }
    set_timeouts(s, 1000);
    return s;
}

static int dial(const char *addr, int port)
{
    return dial_ms(addr, port, 10000);
}

static _Noreturn void sink(int port)
{
    int l = listener(port);
    static char buf[CHUNK];

    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int s = accept(l, NULL, NULL);
        if (s < 0)
            continue;
        while (read(s, buf, sizeof(buf)) > 0)
            ;
        close(s);
    }
}

static void *echo_conn(void *arg)
{
    int s = (int)(long)arg;
    char *buf = malloc(16384);
    ssize_t n;

    while (buf && (n = read(s, buf, 16384)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(s, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    free(buf);
    close(s);
    return NULL;
}

static _Noreturn void echoserver(int port)
{
    int l = listener(port);
    pthread_attr_t at;

    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64 * 1024);
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        pthread_t t;
        int s = accept(l, NULL, NULL);
        if (s < 0)
            continue;
        if (pthread_create(&t, &at, echo_conn, (void *)(long)s) != 0)
            close(s);
    }
}

static void report(unsigned long long bytes, double secs, int complete)
{
    printf("bytes %llu seconds %.4f mb_s %.2f complete %d\n", bytes, secs,
           secs > 0 ? (double)bytes / secs / 1e6 : 0.0, complete);
}

static int source(const char *addr, int port, unsigned long long total, double maxsecs)
{
    static char buf[CHUNK];
    unsigned long long sent = 0;
    double start, deadline;
    int s = dial(addr, port), complete = 0;

    if (s < 0) {
        perror("tcpbench source: connect");
        return 1;
    }
    memset(buf, 'x', sizeof(buf));
    set_timeouts(s, 200);
    start = now();
    deadline = start + maxsecs;
    while (sent < total && now() < deadline) {
        size_t len = total - sent < CHUNK ? (size_t)(total - sent) : CHUNK;
        ssize_t n = write(s, buf, len);
        if (n > 0)
            sent += (unsigned long long)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            break;
    }
    if (sent == total) {
        shutdown(s, SHUT_WR);
        while (now() < deadline) {
            ssize_t n = read(s, buf, sizeof(buf));
            if (n == 0) {
                complete = 1;
                break;
            }
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                break;
        }
    }
    double el = now() - start;
    if (complete) {
        close(s);
        report(total, el, 1);
    } else {
        struct tcp_info ti;
        socklen_t tl = sizeof(ti);
        memset(&ti, 0, sizeof(ti));
        getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &tl);
        reset_close(s);
        report(ti.tcpi_bytes_acked > 0 ? ti.tcpi_bytes_acked - 1 : 0, el, 0); /* less the SYN */
    }
    return 0;
}

static int readall(const char *addr, int port, double maxsecs)
{
    static char buf[CHUNK];
    unsigned long long got = 0;
    double start, deadline;
    int s = dial(addr, port), complete = 0;

    if (s < 0) {
        perror("tcpbench read: connect");
        return 1;
    }
    set_timeouts(s, 200);
    start = now();
    deadline = start + maxsecs;
    while (now() < deadline) {
        ssize_t n = read(s, buf, sizeof(buf));
        if (n == 0) {
            complete = 1;
            break;
        }
        if (n > 0)
            got += (unsigned long long)n;
        else if (errno != EAGAIN && errno != EINTR)
            break;
    }
    double el = now() - start;
    if (complete)
        close(s);
    else
        reset_close(s);
    report(got, el, complete);
    return 0;
}

struct echo_writer {
    int s;
    unsigned long long total;
    double deadline;
};

static void *echo_writer_main(void *arg)
{
    struct echo_writer *w = arg;
    static char buf[CHUNK];
    unsigned long long sent = 0;

    memset(buf, 'e', sizeof(buf));
    while (sent < w->total && now() < w->deadline) {
        size_t len = w->total - sent < CHUNK ? (size_t)(w->total - sent) : CHUNK;
        ssize_t n = write(w->s, buf, len);
        if (n > 0)
            sent += (unsigned long long)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            break;
    }
    return NULL;
}

static int echo(const char *addr, int port, unsigned long long total, double maxsecs)
{
    static char buf[CHUNK];
    struct echo_writer w;
    unsigned long long got = 0;
    pthread_t t;
    int s = dial(addr, port);

    if (s < 0) {
        perror("tcpbench echo: connect");
        return 1;
    }
    set_timeouts(s, 200);
    w = (struct echo_writer){ .s = s, .total = total };
    double start = now();
    w.deadline = start + maxsecs;
    if (pthread_create(&t, NULL, echo_writer_main, &w) != 0)
        return 1;
    while (got < total && now() < w.deadline) {
        ssize_t n = read(s, buf, sizeof(buf));
        if (n > 0)
            got += (unsigned long long)n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            break;
    }
    double el = now() - start;
    pthread_join(t, NULL);
    if (got == total) {
        shutdown(s, SHUT_WR);
        read(s, buf, 1); /* the server's close, within the 200 ms timeout */
        close(s);
    } else {
        reset_close(s);
    }
    report(got, el, got == total);
    return 0;
}

static int xfer(int s, char *buf, size_t size, int out)
{
    for (size_t off = 0; off < size;) {
        ssize_t n = out ? write(s, buf + off, size - off) : read(s, buf + off, size - off);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

static int cps(const char *addr, int port, size_t size, double secs)
{
    static char buf[65536];
    long done = 0, failed = 0;
    double start = now(), end = start + secs;

    memset(buf, 'c', size);
    while (now() < end) {
        int s = dial_ms(addr, port, 1000);
        if (s < 0) {
            failed++;
            continue;
        }
        if (xfer(s, buf, size, 1) < 0 || xfer(s, buf, size, 0) < 0) {
            failed++;
            reset_close(s);
            continue;
        }
        close(s);
        done++;
    }
    double el = now() - start;
    printf("conns %ld per_s %.0f failed %ld\n", done, (double)done / el, failed);
    return 0;
}

static int conns(const char *addr, int port, int n, size_t size, int rounds, double maxsecs)
{
    static char buf[65536], line[64];
    int *fds = calloc((size_t)n, sizeof(int)), open_n = 0;
    long echoes = 0;
    double start = now(), deadline = start + maxsecs;
    struct rlimit rl = { .rlim_cur = (rlim_t)n + 64, .rlim_max = (rlim_t)n + 64 };

    setrlimit(RLIMIT_NOFILE, &rl);
    memset(buf, 'k', size);
    while (open_n < n && now() < deadline) {
        int s = dial_ms(addr, port, 3000);
        if (s >= 0)
            fds[open_n++] = s;
    }
    printf("opened %d seconds %.3f\n", open_n, now() - start);
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    start = now();
    deadline = start + maxsecs;
    for (int r = 0; r < rounds && now() < deadline; r++) {
        for (int i = 0; i < open_n && now() < deadline; i++)
            if (fds[i] >= 0 && xfer(fds[i], buf, size, 1) < 0)
                reset_close(fds[i]), fds[i] = -1;
        for (int i = 0; i < open_n && now() < deadline; i++) {
            if (fds[i] < 0)
                continue;
            if (xfer(fds[i], buf, size, 0) < 0)
                reset_close(fds[i]), fds[i] = -1;
            else
                echoes++;
        }
    }
    double el = now() - start;
    printf("echoes %ld seconds %.4f per_s %.0f\n", echoes, el, el > 0 ? (double)echoes / el : 0.0);
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        line[0] = 0;
    for (int i = 0; i < open_n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp(argv[1], "sink") == 0)
        sink(atoi(argv[2]));
    if (argc == 3 && strcmp(argv[1], "echoserver") == 0)
        echoserver(atoi(argv[2]));
    if (argc == 6 && strcmp(argv[1], "source") == 0)
        return source(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10), atof(argv[5]));
    if (argc == 5 && strcmp(argv[1], "read") == 0)
        return readall(argv[2], atoi(argv[3]), atof(argv[4]));
    if (argc == 6 && strcmp(argv[1], "echo") == 0)
        return echo(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10), atof(argv[5]));
    if (argc == 6 && strcmp(argv[1], "cps") == 0)
        return cps(argv[2], atoi(argv[3]), (size_t)atoi(argv[4]), atof(argv[5]));
    if (argc == 8 && strcmp(argv[1], "conns") == 0)
        return conns(argv[2], atoi(argv[3]), atoi(argv[4]), (size_t)atoi(argv[5]), atoi(argv[6]),
                     atof(argv[7]));
    fprintf(stderr, "usage: tcpbench sink PORT | echoserver PORT | source ADDR PORT BYTES MAXSECS\n"
                    "     | read ADDR PORT MAXSECS | echo ADDR PORT BYTES MAXSECS\n"
                    "     | cps ADDR PORT SIZE SECONDS | conns ADDR PORT N SIZE ROUNDS MAXSECS\n");
    return 2;
}
