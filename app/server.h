/*
 * server.h — a TCP server for the sample apps: one thread accepts, each
 * connection gets a thread of its own running the app's handler, and
 * stopping closes the listener and every open connection (which wakes
 * their threads out of sock_recv with EBADF) before joining them all.
 */
#ifndef NETSTEP_APP_SERVER_H
#define NETSTEP_APP_SERVER_H

#include <stdint.h>

#include "platform.h"

struct app_conn;

struct app_tcp_server {
    const char *name;                  /* thread names: "<name>-<n>" */
    int lsd;                           /* listening socket */
    unsigned max_conns;                /* beyond this, new connections are closed */
    void (*handler)(int sd, void *ctx); /* serves one connection; must not close sd */
    void *ctx;
    /* private */
    struct thread acceptor;
    struct mutex lock;
    struct app_conn *conns;            /* [lock] */
    unsigned nconns;                   /* [lock] */
    unsigned long served;              /* [lock] */
};

/* Open, bind and listen on addr:port (network-order addr). Returns the
 * descriptor, or -1 with errno set. */
int app_tcp_listen(uint32_t addr, uint16_t port, int backlog);
/* Open a UDP socket bound to addr:port. Returns it, or -1 with errno set. */
int app_udp_open(uint32_t addr, uint16_t port);
int app_tcp_server_start(struct app_tcp_server *srv);
void app_tcp_server_stop(struct app_tcp_server *srv);
/* Write all len bytes (sock_send may take part). Returns 0 or -1 (errno). */
int app_send_all(int sd, const void *buf, size_t len);

#endif
