// SPDX-License-Identifier: MIT
/* kvcctl trace: placeholder until the command lands. */
#include <stdio.h>

int kvcctl_trace(int argc, char **argv);

int kvcctl_trace(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("kvcctl trace: not built yet\n", stderr);
	return 1;
}
