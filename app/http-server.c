/*
 * http-server — a small HTTP/1.1 static file server (RFC 9110, RFC 9112)
 * on netstep's TCP, so curl and a real browser can load pages served by
 * the stack.
 *
 *     build/bin/http-server --root docs      # then: curl http://192.0.2.2/README.md
 *
 * GET and HEAD; persistent connections (keep-alive is the HTTP/1.1
 * default; "Connection: close" and HTTP/1.0 without keep-alive end them);
 * Content-Length on every response; 404 for what does not exist, 403 for
 * paths that try to leave the root, 400 for malformed requests, 405 for
 * other methods, 431 for oversized headers. Files are read with the
 * process's own permissions after capabilities are dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/common.h"
#include "app/server.h"
#include "proto/sock.h"

#define HTTP_PORT 80
#define HEADER_MAX 8192

static const char *root = ".";
static const char *prog_name;

static const struct app_opt opts[] = {
    { "root", 1, 'r', "DIR        directory to serve (default: current directory)" },
    { 0 },
};

static int on_option(int key, const char *arg, void *ctx)
{
    (void)ctx;
    if (key != 'r')
        return -1;
    root = arg;
    return 0;
}

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        { ".html", "text/html; charset=utf-8" }, { ".htm", "text/html; charset=utf-8" },
        { ".css", "text/css" },                  { ".js", "text/javascript" },
        { ".json", "application/json" },         { ".png", "image/png" },
        { ".jpg", "image/jpeg" },                { ".gif", "image/gif" },
        { ".svg", "image/svg+xml" },             { ".txt", "text/plain; charset=utf-8" },
        { ".md", "text/plain; charset=utf-8" },  { ".c", "text/plain; charset=utf-8" },
        { ".h", "text/plain; charset=utf-8" },
    };
    const char *dot = strrchr(path, '.');

    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static int send_status(int sd, int code, const char *reason, int keep, int head)
{
    char buf[512];
    char body[128];
    int blen = snprintf(body, sizeof(body), "%d %s\n", code, reason);
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "Connection: %s\r\nServer: netstep\r\n\r\n%s",
                     code, reason, blen, keep ? "keep-alive" : "close", head ? "" : body);
    return app_send_all(sd, buf, (size_t)n);
}

/* Map the request target to a file under root; -1 if it tries to leave. */
static int resolve(const char *target, char *path, size_t size)
{
    char clean[1024];
    size_t n = 0;

    if (target[0] != '/')
        return -1;
    for (const char *p = target; *p && *p != '?' && *p != '#'; p++) {
        if (n + 1 >= sizeof(clean))
            return -1;
        clean[n++] = *p;
    }
    clean[n] = '\0';
    /* refuse any ".." segment and any encoded byte: nothing escapes root */
    if (strstr(clean, "/..") || strchr(clean, '%') || strchr(clean, '\\'))
        return -1;
    snprintf(path, size, "%s%s", root, clean);
    if (clean[n - 1] == '/')
        strncat(path, "index.html", size - strlen(path) - 1);
    return 0;
}

static int send_file(int sd, const char *path, int keep, int head)
{
    char hdr[512], buf[16384];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), n;

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return send_status(sd, 404, "Not Found", keep, head);
    }
    n = snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\nConnection: %s\r\n"
                 "Server: netstep\r\n\r\n",
                 content_type(path), (long long)st.st_size, keep ? "keep-alive" : "close");
    if (app_send_all(sd, hdr, (size_t)n) < 0 || head) {
        close(fd);
        return head ? 0 : -1;
    }
    for (off_t left = st.st_size; left > 0;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0 || app_send_all(sd, buf, (size_t)r) < 0) {
            close(fd);
            return -1; /* a short body: the connection must end */
        }
        left -= r;
    }
    close(fd);
    return 0;
}

/* Does the header block ask to keep the connection (RFC 9112 §9.3)? */
static int wants_keepalive(const char *version, const char *headers)
{
    const char *c = strcasestr(headers, "\nconnection:");
    int http11 = strcmp(version, "HTTP/1.1") == 0;

    if (!c)
        return http11;
    c += strlen("\nconnection:");
    while (*c == ' ' || *c == '\t')
        c++;
    if (strncasecmp(c, "close", 5) == 0)
        return 0;
    if (strncasecmp(c, "keep-alive", 10) == 0)
        return 1;
    return http11;
}

/* Handle one request whose header block is req (NUL-terminated). Returns
 * 1 to keep the connection, 0 to close it. */
static int handle_request(int sd, char *req)
{
    char method[16], target[1024], version[16], path[2048];
    int keep, head;

    if (sscanf(req, "%15s %1023s %15s", method, target, version) != 3 || strncmp(version, "HTTP/1.", 7)) {
        send_status(sd, 400, "Bad Request", 0, 0);
        return 0;
    }
    keep = wants_keepalive(version, req);
    head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0)
        return send_status(sd, 405, "Method Not Allowed", keep, 0) == 0 && keep;
    if (resolve(target, path, sizeof(path)) < 0)
        return send_status(sd, 403, "Forbidden", keep, head) == 0 && keep;
    return send_file(sd, path, keep, head) == 0 && keep;
}

static void http_conn(int sd, void *ctx)
{
    char buf[HEADER_MAX + 1];
    size_t have = 0;

    (void)ctx;
    for (;;) {
        char *end;
        ssize_t n;
        buf[have] = '\0';
        while (!(end = strstr(buf, "\r\n\r\n"))) {
            if (have == HEADER_MAX) {
                send_status(sd, 431, "Request Header Fields Too Large", 0, 0);
                return;
            }
            n = sock_recv(sd, buf + have, HEADER_MAX - have, 0);
            if (n <= 0)
                return; /* the client closed (or reset) */
            have += (size_t)n;
            buf[have] = '\0';
        }
        end[2] = '\0'; /* keep the last header's CRLF for the search above */
        size_t used = (size_t)(end + 4 - buf);
        if (!handle_request(sd, buf))
            return;
        /* a request body is not expected for GET/HEAD: next request */
        memmove(buf, buf + used, have - used);
        have -= used;
    }
}

int main(int argc, char **argv)
{
    struct app_options o;
    struct app_tcp_server tcp = { .name = "http", .handler = http_conn };
    char a[IP_ADDR_STR_LEN];
    struct stat st;
    uint16_t port;

    app_parse_args(&o, argc, argv, NULL, "Serve files from a directory over HTTP/1.1.", opts, on_option, NULL);
    prog_name = o.prog;
    if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: --root %s: not a directory\n", o.prog, root);
        return 1;
    }
    port = o.port > 0 ? (uint16_t)o.port : HTTP_PORT;
    app_signals_block();
    app_stack_up(&o);
    tcp.lsd = app_tcp_listen(app_iface()->unicast, port, 128);
    if (tcp.lsd < 0 || app_tcp_server_start(&tcp) < 0) {
        fprintf(stderr, "%s: tcp port %u: %s\n", o.prog, port, strerror(errno));
        return 1;
    }
    printf("%s: listening on %s:%u (tcp), serving %s\n", o.prog,
           ip_addr_ntop(app_iface()->unicast, a, sizeof(a)), port, root);
    fflush(stdout);
    app_wait_signal(-1);
    app_tcp_server_stop(&tcp);
    printf("%s: tcp: served %lu connections\n", o.prog, tcp.served);
    app_stack_down(&o);
    return 0;
}
