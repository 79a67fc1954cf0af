/* SPDX-License-Identifier: MIT */
/* connhost: the identity-governance connector host. */
#include "autoconfig.h"

#include "cli.h"

int main(int argc, char **argv) { return cli_main(argc, argv); }
