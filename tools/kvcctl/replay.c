// SPDX-License-Identifier: MIT
/* kvcctl replay: placeholder until the command lands. */
#include <stdio.h>

int kvcctl_replay(int argc, char **argv);

int kvcctl_replay(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("kvcctl replay: not built yet\n", stderr);
	return 1;
}
