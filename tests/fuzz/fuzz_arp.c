/* fuzz_arp.c — any bytes as the payload of an ARP frame (EtherType 0x0806),
 * sent to broadcast or to us by the first input byte. */
#include <string.h>

#include "fuzz_common.h"
#include "proto/ether.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t frame[2048];

    fuzz_setup();
    if (size < 1 || size > sizeof(frame) - ETHER_HDR_SIZE)
        return 0;
    test_eth_frame(frame, (data[0] & 1) ? ETHER_ADDR_BROADCAST : TEST_OUR_MAC, TEST_PEER_MAC,
                   ETHER_TYPE_ARP, data + 1, size - 1);
    test_inject(frame, ETHER_HDR_SIZE + size - 1);
    test_flush();
    return 0;
}
