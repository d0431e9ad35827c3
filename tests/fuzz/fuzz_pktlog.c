/* fuzz_pktlog.c — any bytes as a frame for the packet summaries
 * (util/pktlog.c). The first byte picks the output buffer size (0..255) and
 * whether the rest is an Ethernet frame or a bare IPv4 packet, so cut-off
 * output is exercised as much as cut-off input. The buffer is allocated to
 * its exact size, so ASan sees any write past it; the result must be a
 * terminated string of the length returned. No stack is needed. */
#include <stdlib.h>
#include <string.h>

#include "util/pktlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t bufsize, n;
    uint8_t *frame;
    char *buf;

    if (size < 1)
        return 0;
    bufsize = data[0] >> 1;
    if (data[0] & 1)
        bufsize = 256; /* most runs: room for the whole line */
    frame = malloc(size - 1 ? size - 1 : 1); /* exact size: reads past it are caught */
    buf = malloc(bufsize ? bufsize : 1);
    if (!frame || !buf)
        abort();
    memcpy(frame, data + 1, size - 1);
    if (data[0] & 2)
        n = pktlog_format_ip(frame, size - 1, buf, bufsize);
    else
        n = pktlog_format(frame, size - 1, buf, bufsize);
    if (bufsize && (n >= bufsize || strlen(buf) != n))
        abort();
    if (!bufsize && n != 0)
        abort();
    free(frame);
    free(buf);
    return 0;
}
