// SPDX-License-Identifier: MIT
/*
 * The start of a trace above the pool: what kvc_run() and the logical
 * replay both record before any request, so that a reader knows the model
 * and the policy the pool's events come from.
 */
#include <kvc/pool.h>
#include <kvc/record.h>

#include "internal.h"

int kvc_rec_model(struct kvc_recorder *rec, struct kvc_pool *pool,
		  const struct kvc_model_shape *sh, const char *policy)
{
	uint64_t p[KVC_REC_PAYLOAD] = {
		sh->layers,	sh->kv_heads,	     sh->head_dim,
		sh->block_size, (uint64_t)sh->dtype, sh->q_heads,
	};
	int err;

	err = kvc_pool_set_recorder(pool, rec);
	if (err)
		return err;
	err = kvc_recorder_emit(rec, KVC_REC_SHAPE, p);
	if (!err)
		err = kvc_recorder_name(rec, KVC_REC_NAME_POLICY, policy);
	if (err)
		kvc_pool_set_recorder(pool, NULL);
	return err;
}
