/* fuzz_icmp.c — any bytes as an ICMP message inside a valid IPv4 datagram
 * from the peer; the first input byte chooses whether the ICMP checksum is
 * made right (to get past it into type handling, errors and echo). */
#include <string.h>

#include "fuzz_common.h"
#include "proto/ip.h"
#include "util/byteorder.h"
#include "util/cksum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t msg[1472], frame[1600];
    size_t len;

    fuzz_setup();
    if (size < 1 || size - 1 > sizeof(msg))
        return 0;
    len = size - 1;
    memcpy(msg, data + 1, len);
    if ((data[0] & 1) && len >= 4) {
        store16(msg + 2, 0);
        store16(msg + 2, cksum16(msg, len, 0));
    }
    len = test_ip_frame(frame, IP_PROTOCOL_ICMP, ts.peer_ip, ts.our_ip, (uint16_t)size, 0, msg, len);
    test_inject(frame, len);
    test_flush();
    return 0;
}
