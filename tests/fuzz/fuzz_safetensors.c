/* tests/fuzz/fuzz_safetensors.c — the safetensors reader (src/safetensors.c) on arbitrary bytes:
 * it must accept or refuse with a status, never crash, read out of bounds or leak; whatever it
 * accepts must be readable tensor by tensor and pass or fail the digest check cleanly. */
#include "src/checkpoint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loco_safetensors st;
    loco_error err = {0};
    if (LOCO_OK != loco_safetensors_parse(&st, data, size, "fuzz", &err)) {
        return 0;
    }
    (void)loco_safetensors_verify(&st, NULL);
    (void)loco_safetensors_meta(&st, "format");
    for (int i = 0; i < st.count; i++) {
        const loco_st_entry *e = &st.entries[i];
        if (e->numel <= (1u << 20)) {
            float *buf = malloc((e->numel > 0 ? e->numel : 1) * sizeof(float));
            if (NULL != buf) {
                (void)loco_safetensors_read_f32(&st, e, buf, NULL);
                free(buf);
            }
        }
        if (loco_safetensors_find(&st, e->name) == NULL) {
            abort(); /* every entry must be findable by its own name */
        }
    }
    loco_safetensors_close(&st);
    return 0;
}
