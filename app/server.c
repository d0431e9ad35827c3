/*
 * server.c — the thread-per-connection TCP server of the sample apps.
 * See server.h.
 */
#include "app/server.h"

#include <errno.h>
#include <stdio.h>

#include "proto/sock.h"
#include "util/mem.h"

struct app_conn {
    struct app_conn *next;
    struct app_tcp_server *srv;
    int sd;
    int done;          /* [srv->lock] the handler returned */
    struct thread th;
};

int app_tcp_listen(uint32_t addr, uint16_t port, int backlog)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int one = 1, sd = sock_open(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = addr;
    if (sd < 0)
        return -1;
    sock_setsockopt(sd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sock_bind(sd, (struct sockaddr *)&a, sizeof(a)) < 0 || sock_listen(sd, backlog) < 0) {
        int err = errno;
        sock_close(sd);
        errno = err;
        return -1;
    }
    return sd;
}

int app_udp_open(uint32_t addr, uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int sd = sock_open(AF_INET, SOCK_DGRAM, 0);

    a.sin_addr.s_addr = addr;
    if (sd >= 0 && sock_bind(sd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = errno;
        sock_close(sd);
        errno = err;
        return -1;
    }
    return sd;
}

int app_send_all(int sd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = sock_send(sd, p, len, 0);
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void *conn_main(void *arg)
{
    struct app_conn *c = arg;
    struct app_tcp_server *srv = c->srv;

    c->srv->handler(c->sd, c->srv->ctx);
    /* Close under the lock: app_tcp_server_stop only touches descriptors
     * of connections not yet done, so it never reaches a reused one. */
    mutex_lock(&srv->lock);
    sock_close(c->sd);
    c->done = 1;
    mutex_unlock(&srv->lock);
    return NULL;
}

/* Join the threads of finished connections and free them. */
static void reap_done(struct app_tcp_server *srv)
{
    struct app_conn *done = NULL;

    mutex_lock(&srv->lock);
    for (struct app_conn **pp = &srv->conns; *pp;) {
        struct app_conn *c = *pp;
        if (c->done) {
            *pp = c->next;
            srv->nconns--;
            c->next = done;
            done = c;
        } else {
            pp = &c->next;
        }
    }
    mutex_unlock(&srv->lock);
    while (done) {
        struct app_conn *c = done;
        done = c->next;
        thread_join(&c->th);
        mem_free(c);
    }
}

static void *acceptor_main(void *arg)
{
    struct app_tcp_server *srv = arg;
    char name[16];

    snprintf(name, sizeof(name), "%s-accept", srv->name);
    thread_set_name(name);
    for (;;) {
        int sd = sock_accept(srv->lsd, NULL, NULL);
        struct app_conn *c;
        if (sd < 0) {
            if (errno == EBADF || errno == ESHUTDOWN || errno == EINVAL)
                break; /* the listener is closed: stop */
            continue;
        }
        reap_done(srv);
        mutex_lock(&srv->lock);
        int full = srv->nconns >= srv->max_conns;
        mutex_unlock(&srv->lock);
        if (full || !(c = mem_calloc(1, sizeof(*c)))) {
            sock_close(sd);
            continue;
        }
        c->srv = srv;
        c->sd = sd;
        snprintf(name, sizeof(name), "%s-%lu", srv->name, srv->served % 100000);
        mutex_lock(&srv->lock);
        c->next = srv->conns;
        srv->conns = c;
        srv->nconns++;
        srv->served++;
        mutex_unlock(&srv->lock);
        if (thread_create(&c->th, name, conn_main, c) < 0) {
            mutex_lock(&srv->lock);
            sock_close(sd);
            c->done = 1; /* never started: thread_join sees started == 0 */
            mutex_unlock(&srv->lock);
        }
    }
    return NULL;
}

int app_tcp_server_start(struct app_tcp_server *srv)
{
    mutex_init(&srv->lock);
    srv->conns = NULL;
    srv->nconns = 0;
    if (!srv->max_conns)
        srv->max_conns = 1024;
    return thread_create(&srv->acceptor, srv->name, acceptor_main, srv);
}

void app_tcp_server_stop(struct app_tcp_server *srv)
{
    struct app_conn *c;

    sock_close(srv->lsd); /* wakes the acceptor */
    thread_join(&srv->acceptor);
    /* Wake every handler: shutting down both directions makes their
     * blocked calls return; they return, then we close and join. */
    for (;;) {
        mutex_lock(&srv->lock);
        int left = srv->nconns;
        for (c = srv->conns; c; c = c->next)
            if (!c->done)
                sock_shutdown(c->sd, SHUT_RDWR);
        mutex_unlock(&srv->lock);
        reap_done(srv);
        if (left == 0)
            break;
        platform_sleep_ms(10);
    }
    mutex_destroy(&srv->lock);
}
