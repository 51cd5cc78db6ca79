/* SPDX-License-Identifier: MIT */
/*
 * With -DKVC_FUZZ_MAIN a fuzz target is a plain program that runs the
 * files named on its command line through LLVMFuzzerTestOneInput(), for
 * compilers without libFuzzer and for replaying a crash under a debugger.
 * Included at the end of each target.
 */
#ifndef KVC_FUZZ_MAIN_H
#define KVC_FUZZ_MAIN_H

#ifdef KVC_FUZZ_MAIN
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		uint8_t *buf = NULL;
		size_t len = 0, cap = 0, n;

		if (!f) {
			perror(argv[i]);
			return 1;
		}
		do {
			if (len == cap) {
				cap = cap ? cap * 2 : 4096;
				buf = realloc(buf, cap);
				if (!buf)
					return 1;
			}
			n = fread(buf + len, 1, cap - len, f);
			len += n;
		} while (n);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, len);
		free(buf);
	}
	return 0;
}
#endif /* KVC_FUZZ_MAIN */

#endif /* KVC_FUZZ_MAIN_H */
