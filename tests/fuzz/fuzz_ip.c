/* fuzz_ip.c — a train of IPv4 datagrams, to reach reassembly.
 *
 * Input: records of [len (2 bytes, big-endian)][len bytes of IPv4 datagram].
 * When the first byte of a record's header byte 0 has the low bit of the
 * following control byte set, the IP header checksum is fixed up so the
 * datagram gets past validation; then the virtual clock may move so
 * reassembly timers fire. */
#include <string.h>

#include "fuzz_common.h"
#include "proto/ether.h"
#include "util/byteorder.h"
#include "util/cksum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t frame[ETHER_HDR_SIZE + 1600];

    fuzz_setup();
    while (size >= 3) {
        uint8_t ctl = data[0];
        size_t len = load16(data + 1);
        uint8_t *ip = frame + ETHER_HDR_SIZE;

        data += 3;
        size -= 3;
        if (len > size)
            len = size;
        if (len > sizeof(frame) - ETHER_HDR_SIZE)
            len = sizeof(frame) - ETHER_HDR_SIZE;
        test_eth_frame(frame, TEST_OUR_MAC, TEST_PEER_MAC, ETHER_TYPE_IP, data, len);
        if ((ctl & 1) && len >= 20 && (ip[0] & 0x0f) >= 5 && (size_t)(ip[0] & 0x0f) * 4 <= len) {
            store16(ip + 10, 0);
            store16(ip + 10, cksum16(ip, (size_t)(ip[0] & 0x0f) * 4, 0));
        }
        test_inject(frame, ETHER_HDR_SIZE + len);
        if (ctl & 2) { /* move time up to 63 s at once: reassembly timeouts */
            net_clock_advance((uint64_t)(ctl >> 2) * 1000);
            net_poll();
        }
        data += len;
        size -= len;
    }
    test_flush();
    return 0;
}
