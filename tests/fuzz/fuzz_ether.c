/* fuzz_ether.c — any bytes as a whole Ethernet frame from the tap. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_setup();
    if (size > 2048)
        return 0;
    test_inject(data, size);
    test_flush();
    return 0;
}
