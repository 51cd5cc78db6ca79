// SPDX-License-Identifier: MIT
/*
 * What the commands that run a model (generate, eval) share: loading the
 * GGUF file, the shape and size of their caches, the policy check they
 * make before the model is loaded, and compressing as the policy asks.
 * Both must build their caches the same way, or their figures would not
 * compare.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <kvc/kvc.h>
#include <kvc/evict.h>
#include <kvc/run.h>

#include "../../model/gguf.h"
#include "../../model/llama.h"
#include "../../model/tokenizer.h"
#include "kvcctl.h"

int kvcctl_model_load(const char *cmd, const char *path, struct kvc_gguf **g,
		      struct kvc_tokenizer **tok, struct kvc_llama **m)
{
	if (access(path, F_OK)) {
		fprintf(stderr, "kvcctl %s: no model at %s", cmd, path);
		if (!strcmp(path, KVCCTL_MODEL_DEFAULT))
			fputs("; run 'make model' to download SmolLM2-135M-Instruct",
			      stderr);
		fputc('\n', stderr);
		return -ENOENT;
	}
	/* kvc_gguf_open()'s messages name the file already. */
	if (kvc_gguf_open(path, g)) {
		fprintf(stderr, "kvcctl %s: %s\n", cmd, kvc_last_error());
		return -EINVAL;
	}
	if (kvc_tok_load(*g, tok) || kvc_llama_load(*g, m)) {
		fprintf(stderr, "kvcctl %s: %s: %s\n", cmd, path,
			kvc_last_error());
		return -EINVAL;
	}
	return 0;
}

void kvcctl_model_shape(const struct kvc_llama *m,
			struct kvc_model_shape *shape)
{
	kvc_llama_shape(m, KVCCTL_MODEL_BLOCK_SIZE, KVC_DTYPE_F16, shape);
}

uint64_t kvcctl_model_capacity(const struct kvc_model_shape *shape,
			       uint64_t tokens)
{
	/* One block more than whole ones per head: room for the partial one. */
	return (tokens + shape->block_size) / shape->block_size *
	       shape->layers * shape->kv_heads;
}

int kvcctl_model_check_policy(const struct kvc_policy_params *pp)
{
	struct kvc_run_params rp;
	struct kvc_policy *pol;
	int err;

	kvc_run_params_init(&rp);
	rp.shape.block_size = KVCCTL_MODEL_BLOCK_SIZE;
	rp.shape.dtype = KVC_DTYPE_F16;
	err = kvc_policy_create(pp, &rp.shape, &pol);
	if (err)
		return err;
	kvc_policy_destroy(pol);
	return 0;
}

int kvcctl_model_compress(struct kvc_policy *pol, struct kvc_kv *kv,
			  struct kvc_seq *seq, uint32_t steps,
			  uint32_t *compressions)
{
	int err;

	if (!kvc_policy_due(pol, seq, steps))
		return 0;
	err = kvc_policy_compress(pol, seq, NULL);
	if (!err)
		err = kvc_kv_compact(kv, NULL);
	if (!err && compressions)
		(*compressions)++;
	return err;
}

uint32_t kvcctl_argmax(const float *x, uint32_t n)
{
	uint32_t i, best = 0;

	for (i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}
