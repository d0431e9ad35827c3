/* fuzz_tcp_listen.c — TCP segments against a listening socket on port 7:
 * handshakes, SYN floods, bad options, data on half-open connections. */
#include "fuzz_tcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lsd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_setup();
    if (lsd < 0) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(FUZZ_PORT) };
        lsd = sock_open(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (lsd < 0 || sock_bind(lsd, (struct sockaddr *)&a, sizeof(a)) < 0 || sock_listen(lsd, 8) < 0)
            abort();
    }
    fuzz_tcp_records(data, size);
    fuzz_tcp_drain(lsd);
    /* let timers run out so half-open and closing pcbs go away */
    net_clock_advance(200000);
    net_poll();
    test_flush();
    return 0;
}
