/* src/main.c — the loco command line (placeholder until the CLI lands in this commit series). */
#include "base/base.h"
#include <stdio.h>
int main(void) { printf("loco %s\n", LOCO_VERSION_STRING); return 0; }
