// SPDX-License-Identifier: MIT
/*
 * Fuzz target of the GGUF reader: parse the input, then walk everything
 * a parsed file offers (every entry through every getter, every string of
 * every array of strings, every tensor by name and its first and last
 * byte), so a parse that lets a bad offset through is caught when it is
 * used. With -DKVC_FUZZ_MAIN it is a plain program that runs the files
 * given as arguments, for compilers without libFuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/error.h>

#include "../model/gguf.h"

/* Keeps the reads from being optimized away. */
static volatile uint8_t sink;

static void touch(const void *p, uint64_t len)
{
	const uint8_t *b = p;

	if (len) {
		sink ^= b[0];
		sink ^= b[len - 1];
	}
}

static void walk_kv(const struct kvc_gguf *g, const struct kvc_gguf_kv *kv)
{
	struct kvc_gguf_str s;
	char key[256];
	uint64_t i;
	uint32_t u;
	float f;

	touch(kv->key.s, kv->key.len);
	if (kv->key.len < sizeof(key)) {
		memcpy(key, kv->key.s, kv->key.len);
		key[kv->key.len] = '\0';
		/* A key holding a NUL is found under its prefix, or not. */
		if (strlen(key) == kv->key.len && kvc_gguf_find(g, key) != kv)
			abort();
		kvc_gguf_get_u32(g, key, &u);
		kvc_gguf_get_f32(g, key, &f);
		if (!kvc_gguf_get_str(g, key, &s))
			touch(s.s, s.len);
	}
	if (kv->type == KVC_GGUF_ARRAY && kv->arr_type == KVC_GGUF_STRING) {
		for (i = 0; i < kv->count; i++) {
			if (kvc_gguf_arr_str(g, kv, i, &s))
				abort();
			touch(s.s, s.len);
		}
		if (!kvc_gguf_arr_str(g, kv, kv->count, &s))
			abort();
	}
}

static void walk_tensor(const struct kvc_gguf *g,
			const struct kvc_gguf_tensor *t)
{
	char name[256];

	touch(t->name.s, t->name.len);
	touch(t->data, t->bytes);
	if (kvc_ggml_row_bytes(t->type, t->dims[0]) == 0)
		abort();
	if (t->name.len < sizeof(name)) {
		memcpy(name, t->name.s, t->name.len);
		name[t->name.len] = '\0';
		if (strlen(name) == t->name.len &&
		    kvc_gguf_tensor(g, name) != t)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvc_gguf *g;
	uint64_t i;
	int err;

	err = kvc_gguf_parse(data, size, &g);
	if (err) {
		/* A refusal always says why. */
		if (err != -EINVAL && err != -ENOMEM)
			abort();
		if (!kvc_last_error()[0])
			abort();
		return 0;
	}
	for (i = 0; i < g->nr_kv; i++)
		walk_kv(g, &g->kv[i]);
	for (i = 0; i < g->nr_tensors; i++)
		walk_tensor(g, &g->tensors[i]);
	kvc_gguf_find(g, "general.architecture");
	kvc_gguf_tensor(g, "token_embd.weight");
	kvc_gguf_close(g);
	return 0;
}

#include "fuzz_main.h"
