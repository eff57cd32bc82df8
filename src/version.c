/* src/version.c — `loco version`: version and build features. */
#include "base/base.h"
#include "src/commands.h"

#include <stdio.h>
#include <string.h>

int loco_cmd_version(int argc, char **argv)
{
    if (argc > 1 && (0 == strcmp(argv[1], "--help") || 0 == strcmp(argv[1], "-h"))) {
        printf("usage: loco version\n\nPrints loco's version and whether CUDA was built in.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "loco version: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
    printf("loco %s (cuda %s, openmp %s)\n", LOCO_VERSION_STRING, LOCO_HAVE_CUDA ? "yes" : "no",
#ifdef _OPENMP
           "yes"
#else
           "no"
#endif
    );
    return 0;
}
