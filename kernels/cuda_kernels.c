// SPDX-License-Identifier: MIT
/*
 * The CUDA kernels from the host: load the embedded images into the
 * current context, find every kernel by name, and queue launches that
 * follow the plans of launch.c. Only the driver table is used, so the
 * fake driver stands in for a device in the CPU tests (it runs the
 * kernels' emulation, emulate.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../alloc/backend.h"
#include "../alloc/error.h"
#include "cuda_kernels.h"
#include "decode_layout.h"
#include "images.h"
#include "prefill_layout.h"

/* CUresult values only this file tells apart. */
#define CU_ERROR_NO_BINARY_FOR_GPU 209
#define CU_ERROR_UNSUPPORTED_PTX_VERSION 222

/* Shared memory a CTA gets without asking (cuFuncSetAttribute). */
#define DEFAULT_SMEM (48u << 10)
/* Partitions a decode reduce merges at most (launch.c plans no more). */
#define MAX_PARTS 1024u
/* The oldest device the images carry machine code for (sm_80). */
#define MIN_CC_MAJOR 8u

#define NR_DTYPES 3
#define NR_HDS 3

/* Where each kernel's function sits in struct kvc_cuda_kernels. */
enum {
	K_DECODE_PART = 0,
	K_DECODE_REDUCE = K_DECODE_PART + NR_DTYPES * NR_HDS,
	K_PREFILL_ATTN = K_DECODE_REDUCE + NR_HDS,
	K_PREFILL_METRIC = K_PREFILL_ATTN + NR_DTYPES * NR_HDS,
	K_PREFILL_POOL = K_PREFILL_METRIC + NR_DTYPES * NR_HDS,
	K_CACHE_WRITE,
	K_MOVE_CACHE,
	K_BLOCK_COPY,
	NR_KERNELS,
};

#define NAME_MAX_LEN 40

/**
 * struct kvc_cuda_kernels - The kernels, loaded into one context.
 * @drv: the driver they were loaded through.
 * @dev: the context's device.
 * @gpu: its properties, for the plans.
 * @modules: the loaded modules, one per image.
 * @nr_modules: entries of @modules.
 * @fn: each kernel's function (K_* indexes).
 * @name: each kernel's name, for messages.
 */
struct kvc_cuda_kernels {
	const struct kvc_cuda_driver *drv;
	kvc_cu_device dev;
	struct kvc_gpu_info gpu;
	kvc_cu_module *modules;
	unsigned int nr_modules;
	kvc_cu_function fn[NR_KERNELS];
	char name[NR_KERNELS][NAME_MAX_LEN];
};

/*
 * What the fake driver loads when the library carries no image: it
 * accepts any image and runs every kernel by name, so the launchers are
 * tested on every machine.
 */
static const unsigned char placeholder_image[16] __attribute__((aligned(16))) =
	"kvc-emulated";

static const char *const dtype_names[NR_DTYPES] = { "f32", "f16", "bf16" };
static const uint32_t hd_variants[NR_HDS] = {
	KVC_KERNEL_HD_SMALL,
	KVC_KERNEL_HD_MEDIUM,
	KVC_KERNEL_HD_LARGE,
};

bool kvc_cuda_kernels_built(void)
{
	return kvc_cuda_nr_images > 0;
}

static bool is_fake(const struct kvc_cuda_driver *drv)
{
	return drv->name && !strcmp(drv->name, "cuda-fake");
}

/* Index of the head_dim variant @hd in hd_variants[], -1 for none. */
static int hd_index(uint32_t hd)
{
	int i;

	for (i = 0; i < NR_HDS; i++)
		if (hd_variants[i] == hd)
			return i;
	return -1;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static void fill_names(struct kvc_cuda_kernels *k)
{
	int d, h;

	for (d = 0; d < NR_DTYPES; d++) {
		for (h = 0; h < NR_HDS; h++) {
			snprintf(k->name[K_DECODE_PART + d * NR_HDS + h],
				 NAME_MAX_LEN, "kvc_decode_part_%s_%u",
				 dtype_names[d], hd_variants[h]);
			snprintf(k->name[K_PREFILL_ATTN + d * NR_HDS + h],
				 NAME_MAX_LEN, "kvc_prefill_attn_%s_%u",
				 dtype_names[d], hd_variants[h]);
			snprintf(k->name[K_PREFILL_METRIC + d * NR_HDS + h],
				 NAME_MAX_LEN, "kvc_prefill_metric_%s_%u",
				 dtype_names[d], hd_variants[h]);
		}
	}
	for (h = 0; h < NR_HDS; h++)
		snprintf(k->name[K_DECODE_REDUCE + h], NAME_MAX_LEN,
			 "kvc_decode_reduce_%u", hd_variants[h]);
	snprintf(k->name[K_PREFILL_POOL], NAME_MAX_LEN, "kvc_prefill_pool");
	snprintf(k->name[K_CACHE_WRITE], NAME_MAX_LEN, "kvc_cache_write");
	snprintf(k->name[K_MOVE_CACHE], NAME_MAX_LEN, "kvc_move_cache");
	snprintf(k->name[K_BLOCK_COPY], NAME_MAX_LEN, "kvc_block_copy");
}

/* Most dynamic shared memory kernel @i may be launched with. */
static uint64_t smem_need(const struct kvc_cuda_kernels *k, int i)
{
	uint32_t hd;

	if (i >= K_DECODE_PART && i < K_DECODE_REDUCE)
		return k->gpu.smem_optin; /* partitions are sized to fill it */
	if (i >= K_DECODE_REDUCE && i < K_PREFILL_ATTN)
		return kvc_decode_reduce_smem(KVC_KERNEL_MAX_GROUP, MAX_PARTS,
					      hd_variants[i - K_DECODE_REDUCE]);
	if (i >= K_PREFILL_ATTN && i < K_PREFILL_METRIC) {
		hd = hd_variants[(i - K_PREFILL_ATTN) % NR_HDS];
		return kvc_prefill_attn_smem(KVC_KERNEL_MAX_GROUP, hd);
	}
	if (i >= K_PREFILL_METRIC && i < K_PREFILL_POOL) {
		hd = hd_variants[(i - K_PREFILL_METRIC) % NR_HDS];
		return kvc_prefill_metric_smem(KVC_KERNEL_MAX_GROUP, hd);
	}
	return 0;
}

static uint32_t attr_u32(int v)
{
	return v > 0 ? (uint32_t)v : 0;
}

/* The device's properties, as the plans need them. */
static int read_gpu(struct kvc_cuda_kernels *k)
{
	static const int attrs[] = {
		KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
		KVC_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
		KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
		KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
		KVC_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE,
		KVC_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE,
		KVC_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH,
	};
	int v[sizeof(attrs) / sizeof(attrs[0])];
	kvc_cu_result r;
	size_t i;

	for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		v[i] = 0;
		r = k->drv->cuDeviceGetAttribute(&v[i], attrs[i], k->dev);
		if (r)
			return kvc_cu_errno(k->drv, r, "cuDeviceGetAttribute");
	}
	k->gpu.sms = attr_u32(v[0]);
	k->gpu.smem_optin = attr_u32(v[1]);
	k->gpu.cc_major = attr_u32(v[2]);
	k->gpu.cc_minor = attr_u32(v[3]);
	k->gpu.l2_bytes = attr_u32(v[4]);
	k->gpu.peak_bytes_per_s =
		kvc_gpu_peak_bw(attr_u32(v[5]), attr_u32(v[6]));
	if (!k->gpu.sms)
		return kvc_err(-ENODEV, "device %d reports no multiprocessors",
			       k->dev);
	return 0;
}

static int load_modules(struct kvc_cuda_kernels *k)
{
	unsigned int nr = kvc_cuda_nr_images, i;
	kvc_cu_result r;
	const void *image;

	if (!nr)
		nr = 1; /* the fake's placeholder */
	k->modules = calloc(nr, sizeof(*k->modules));
	if (!k->modules)
		return kvc_err(-ENOMEM, "out of memory for %u modules", nr);
	for (i = 0; i < nr; i++) {
		image = kvc_cuda_nr_images ? kvc_cuda_images[i].data :
					     placeholder_image;
		r = k->drv->cuModuleLoadData(&k->modules[i], image);
		if (r == CU_ERROR_NO_BINARY_FOR_GPU ||
		    r == CU_ERROR_UNSUPPORTED_PTX_VERSION)
			return kvc_err(
				-ENODEV,
				"kernel image %s: nothing in it runs on compute capability %u.%u with this driver",
				kvc_cuda_nr_images ? kvc_cuda_images[i].name :
						     "placeholder",
				k->gpu.cc_major, k->gpu.cc_minor);
		if (r)
			return kvc_cu_errno(k->drv, r, "cuModuleLoadData");
		k->nr_modules++;
	}
	return 0;
}

/* Kernel @i from whichever module has it. */
static int find_kernel(struct kvc_cuda_kernels *k, int i)
{
	char what[NAME_MAX_LEN + 24];
	kvc_cu_result r;
	unsigned int m;

	for (m = 0; m < k->nr_modules; m++) {
		r = k->drv->cuModuleGetFunction(&k->fn[i], k->modules[m],
						k->name[i]);
		if (!r)
			return 0;
		/* Only "not in this module" sends us to the next one. */
		if (r != KVC_CUDA_ERROR_NOT_FOUND) {
			k->fn[i] = NULL;
			snprintf(what, sizeof(what), "cuModuleGetFunction %s",
				 k->name[i]);
			return kvc_cu_errno(k->drv, r, what);
		}
	}
	k->fn[i] = NULL;
	return kvc_err(-ENODEV, "kernel %s is in no image", k->name[i]);
}

/* Let kernel @i ask for all the shared memory a CTA may have. */
static int raise_smem(struct kvc_cuda_kernels *k, int i)
{
	kvc_cu_result r;

	if (k->gpu.smem_optin <= DEFAULT_SMEM ||
	    smem_need(k, i) <= DEFAULT_SMEM)
		return 0;
	r = k->drv->cuFuncSetAttribute(
		k->fn[i], KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
		(int)k->gpu.smem_optin);
	if (r)
		return kvc_cu_errno(k->drv, r, "cuFuncSetAttribute");
	return 0;
}

int kvc_cuda_kernels_load(const struct kvc_cuda_driver *drv, kvc_cu_device dev,
			  struct kvc_cuda_kernels **out)
{
	struct kvc_cuda_kernels *k;
	int err, i;

	if (!drv || !out)
		return kvc_err(-EINVAL, "kvc_cuda_kernels_load: NULL argument");
	if (!kvc_cuda_kernels_built() && !is_fake(drv))
		return kvc_err(
			-ENODEV,
			"the library was built without the CUDA kernels");
	if (!drv->cuDeviceGetAttribute || !drv->cuModuleLoadData ||
	    !drv->cuModuleUnload || !drv->cuModuleGetFunction ||
	    !drv->cuFuncSetAttribute || !drv->cuLaunchKernel)
		return kvc_err(-ENODEV,
			       "driver %s lacks the module and launch calls",
			       drv->name ? drv->name : "?");
	k = calloc(1, sizeof(*k));
	if (!k)
		return kvc_err(-ENOMEM, "out of memory for the kernels");
	k->drv = drv;
	k->dev = dev;
	fill_names(k);

	err = read_gpu(k);
	if (!err && !is_fake(drv) && k->gpu.cc_major < MIN_CC_MAJOR)
		err = kvc_err(
			-ENODEV,
			"device %d has compute capability %u.%u; the kernels need %u.0 or later",
			dev, k->gpu.cc_major, k->gpu.cc_minor, MIN_CC_MAJOR);
	if (!err)
		err = load_modules(k);
	for (i = 0; !err && i < NR_KERNELS; i++) {
		err = find_kernel(k, i);
		if (!err)
			err = raise_smem(k, i);
	}
	if (err) {
		kvc_cuda_kernels_unload(k);
		return err;
	}
	*out = k;
	return 0;
}

void kvc_cuda_kernels_unload(struct kvc_cuda_kernels *k)
{
	unsigned int m;

	if (!k)
		return;
	/* Nothing to do about a failed unload: the context goes anyway. */
	for (m = 0; m < k->nr_modules; m++)
		k->drv->cuModuleUnload(k->modules[m]);
	free(k->modules);
	free(k);
}

const struct kvc_gpu_info *
kvc_cuda_kernels_gpu(const struct kvc_cuda_kernels *k)
{
	return &k->gpu;
}

const struct kvc_cuda_driver *
kvc_cuda_kernels_driver(const struct kvc_cuda_kernels *k)
{
	return k->drv;
}

/* Queue kernel @i with @l: its one parameter is the struct at @args. */
static int launch(struct kvc_cuda_kernels *k, int i, const struct kvc_launch *l,
		  kvc_cu_stream stream, const void *args)
{
	void *params[] = { (void *)args };
	char what[NAME_MAX_LEN + 16];
	kvc_cu_result r;

	r = k->drv->cuLaunchKernel(k->fn[i], l->grid[0], l->grid[1], l->grid[2],
				   l->threads, 1, 1, l->smem, stream, params,
				   NULL);
	if (!r)
		return 0;
	snprintf(what, sizeof(what), "cuLaunchKernel %s", k->name[i]);
	return kvc_cu_errno(k->drv, r, what);
}

/* A plan's launch fits the device it would run on. */
static bool fits(const struct kvc_cuda_kernels *k, const struct kvc_launch *l)
{
	return l->smem <= k->gpu.smem_optin || l->smem <= DEFAULT_SMEM;
}

static int check_paged(const struct kvc_kargs_paged *kv, const char *fn)
{
	if (!kv->base)
		return kvc_err(-EINVAL, "%s: no cache", fn);
	if (!kvc_kernel_dtype_ok(kv->dtype))
		return kvc_err(-EINVAL, "%s: unknown dtype %u", fn, kv->dtype);
	if (!kv->block_size || !kv->head_dim)
		return kvc_err(-EINVAL, "%s: block_size %u, head_dim %u", fn,
			       kv->block_size, kv->head_dim);
	return 0;
}

/* The attention kernels' variant of @kv, its index into hd_variants[]. */
static int attn_variant(const struct kvc_kargs_paged *kv, uint32_t plan_hd,
			const char *fn)
{
	uint32_t hd = kvc_kernel_hd(kv->head_dim);
	int err = check_paged(kv, fn);

	if (err)
		return err;
	if (!hd)
		return kvc_err(-EINVAL,
			       "%s: head_dim %u not a multiple of 8 in 8..%u",
			       fn, kv->head_dim, KVC_KERNEL_HD_LARGE);
	if (hd != plan_hd)
		return kvc_err(
			-EINVAL,
			"%s: head_dim %u runs on variant %u, the plan is for %u",
			fn, kv->head_dim, hd, plan_hd);
	return hd_index(hd);
}

static int check_decode(const struct kvc_cuda_kernels *k,
			const struct kvc_decode_args *a,
			const struct kvc_decode_plan *p, const char *fn)
{
	if (!a->tables || !a->lens || !a->q || !a->out || !a->ws)
		return kvc_err(-EINVAL, "%s: a NULL device address", fn);
	if (a->group < 1 || a->group > KVC_KERNEL_MAX_GROUP)
		return kvc_err(-EINVAL, "%s: group %u not in 1..%u", fn,
			       a->group, KVC_KERNEL_MAX_GROUP);
	if (!kvc_kernel_metric_ok(a->metric))
		return kvc_err(-EINVAL, "%s: unknown metric %u", fn, a->metric);
	if (!a->nr_heads || !a->max_len)
		return kvc_err(-EINVAL, "%s: nr_heads %u, max_len %u", fn,
			       a->nr_heads, a->max_len);
	if (a->nr_parts != p->nr_parts || a->part_tokens != p->part_tokens)
		return kvc_err(
			-EINVAL,
			"%s: %u partitions of %u tokens, the plan %u of %u", fn,
			a->nr_parts, a->part_tokens, p->nr_parts,
			p->part_tokens);
	if (a->part_tokens % a->kv.block_size ||
	    (uint64_t)a->nr_parts * a->part_tokens < a->max_len)
		return kvc_err(
			-EINVAL,
			"%s: %u partitions of %u tokens do not cover max_len %u in blocks of %u",
			fn, a->nr_parts, a->part_tokens, a->max_len,
			a->kv.block_size);
	if (p->part.grid[0] != a->nr_parts || p->part.grid[1] != a->nr_heads ||
	    p->part.grid[2] != 1 || p->reduce.grid[0] != a->nr_heads ||
	    p->reduce.grid[1] != 1 || p->reduce.grid[2] != 1)
		return kvc_err(-EINVAL, "%s: the plan is for another batch",
			       fn);
	/* The caller sized the workspace from the plan. */
	if (p->ws_bytes != 4 * kvc_decode_ws_layout(a->nr_heads, a->group,
						    a->nr_parts, a->kv.head_dim,
						    a->max_len, a->metric)
					   .floats)
		return kvc_err(-EINVAL,
			       "%s: the plan's workspace is for another batch",
			       fn);
	if (p->part.smem < kvc_decode_part_smem(a->kv.dtype, a->group,
						a->part_tokens, p->hd) ||
	    p->reduce.smem <
		    kvc_decode_reduce_smem(a->group, a->nr_parts, p->hd) ||
	    !fits(k, &p->part) || !fits(k, &p->reduce))
		return kvc_err(
			-EINVAL,
			"%s: the plan's shared memory is for another group or device",
			fn);
	return 0;
}

int kvc_cuda_decode(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
		    const struct kvc_decode_args *args,
		    const struct kvc_decode_plan *plan)
{
	const char *fn = "kvc_cuda_decode";
	int h, err;

	if (!k || !args || !plan)
		return kvc_err(-EINVAL, "%s: NULL argument", fn);
	h = attn_variant(&args->kv, plan->hd, fn);
	if (h < 0)
		return h;
	err = check_decode(k, args, plan, fn);
	if (err)
		return err;
	err = launch(k, K_DECODE_PART + (int)args->kv.dtype * NR_HDS + h,
		     &plan->part, stream, args);
	if (err)
		return err;
	return launch(k, K_DECODE_REDUCE + h, &plan->reduce, stream, args);
}

static int check_prefill(const struct kvc_cuda_kernels *k,
			 const struct kvc_prefill_args *a,
			 const struct kvc_prefill_plan *p, const char *fn)
{
	bool metric = a->metric != KVC_METRIC_NONE;
	bool pool = metric && a->pool_kernel > 1;
	uint32_t hd = p->hd;

	if (!a->tables || !a->lens || !a->q || !a->out || (metric && !a->ws))
		return kvc_err(-EINVAL, "%s: a NULL device address", fn);
	if (a->group < 1 || a->group > KVC_KERNEL_MAX_GROUP)
		return kvc_err(-EINVAL, "%s: group %u not in 1..%u", fn,
			       a->group, KVC_KERNEL_MAX_GROUP);
	if (!kvc_kernel_metric_ok(a->metric))
		return kvc_err(-EINVAL, "%s: unknown metric %u", fn, a->metric);
	if (!a->nr_heads || !a->kv_heads || a->nr_heads % a->kv_heads)
		return kvc_err(-EINVAL,
			       "%s: nr_heads %u not a multiple of kv_heads %u",
			       fn, a->nr_heads, a->kv_heads);
	if (!a->n || a->n > a->max_len)
		return kvc_err(-EINVAL, "%s: n %u not in 1..max_len %u", fn,
			       a->n, a->max_len);
	if (p->attn.grid[0] != div_up(a->n, kvc_prefill_q_tile(hd)) ||
	    p->attn.grid[1] != a->nr_heads || p->attn.grid[2] != 1 ||
	    (p->metric.grid[0] != 0) != metric ||
	    (p->pool.grid[0] != 0) != pool)
		return kvc_err(-EINVAL, "%s: the plan is for another prefill",
			       fn);
	if (metric &&
	    (p->metric.grid[0] != div_up(a->max_len, kvc_prefill_k_tile(hd)) ||
	     p->metric.grid[1] != a->nr_heads || p->metric.grid[2] != 1))
		return kvc_err(-EINVAL, "%s: the plan is for another max_len",
			       fn);
	if (pool &&
	    (p->pool.grid[0] != div_up(a->max_len, KVC_PREFILL_POOL_THREADS) ||
	     p->pool.grid[1] != a->nr_heads || p->pool.grid[2] != 1))
		return kvc_err(-EINVAL, "%s: the plan is for another max_len",
			       fn);
	if (p->ws_bytes != 4 * kvc_prefill_ws_layout(a->nr_heads, a->group,
						     a->n, a->max_len,
						     a->metric, a->pool_kernel)
					   .floats)
		return kvc_err(
			-EINVAL,
			"%s: the plan's workspace is for another prefill", fn);
	if (p->attn.smem < kvc_prefill_attn_smem(a->group, hd) ||
	    (metric &&
	     p->metric.smem < kvc_prefill_metric_smem(a->group, hd)) ||
	    !fits(k, &p->attn) || !fits(k, &p->metric))
		return kvc_err(
			-EINVAL,
			"%s: the plan's shared memory is for another group or device",
			fn);
	return 0;
}

int kvc_cuda_prefill(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
		     const struct kvc_prefill_args *args,
		     const struct kvc_prefill_plan *plan)
{
	const char *fn = "kvc_cuda_prefill";
	int h, d, err;

	if (!k || !args || !plan)
		return kvc_err(-EINVAL, "%s: NULL argument", fn);
	h = attn_variant(&args->kv, plan->hd, fn);
	if (h < 0)
		return h;
	err = check_prefill(k, args, plan, fn);
	if (err)
		return err;
	d = (int)args->kv.dtype;
	err = launch(k, K_PREFILL_ATTN + d * NR_HDS + h, &plan->attn, stream,
		     args);
	if (!err && plan->metric.grid[0])
		err = launch(k, K_PREFILL_METRIC + d * NR_HDS + h,
			     &plan->metric, stream, args);
	if (!err && plan->pool.grid[0])
		err = launch(k, K_PREFILL_POOL, &plan->pool, stream, args);
	return err;
}

/*
 * The launch of a kernel of a warp a row (cache write, move): the cache's
 * fields checked, @addrs_ok saying whether the row arrays are set.
 */
static int launch_rows(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
		       int kernel, const struct kvc_kargs_paged *kv,
		       uint64_t rows, bool addrs_ok, const char *fn,
		       const void *args)
{
	struct kvc_launch l;
	int err;

	err = check_paged(kv, fn);
	if (err)
		return err;
	if (!addrs_ok)
		return kvc_err(-EINVAL, "%s: a NULL device address", fn);
	err = kvc_rows_launch(rows, &l);
	if (err)
		return err;
	return launch(k, kernel, &l, stream, args);
}

int kvc_cuda_cache_write(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
			 const struct kvc_cache_write_args *args)
{
	if (!k || !args)
		return kvc_err(-EINVAL, "kvc_cuda_cache_write: NULL argument");
	if (!args->rows)
		return 0;
	return launch_rows(k, stream, K_CACHE_WRITE, &args->kv, args->rows,
			   args->slots && args->k && args->v,
			   "kvc_cuda_cache_write", args);
}

int kvc_cuda_move(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
		  const struct kvc_move_args *args)
{
	if (!k || !args)
		return kvc_err(-EINVAL, "kvc_cuda_move: NULL argument");
	if (!args->n)
		return 0;
	return launch_rows(k, stream, K_MOVE_CACHE, &args->kv, args->n,
			   args->moves != 0, "kvc_cuda_move", args);
}

int kvc_cuda_block_copy(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
			const struct kvc_copy_args *args)
{
	const char *fn = "kvc_cuda_block_copy";
	struct kvc_launch l;
	int err;

	if (!k || !args)
		return kvc_err(-EINVAL, "%s: NULL argument", fn);
	if (!args->n)
		return 0;
	if (args->n > KVC_COPY_INLINE && !args->pairs_dev)
		return kvc_err(
			-EINVAL,
			"%s: %u pairs, more than the %u a launch carries", fn,
			args->n, KVC_COPY_INLINE);
	if (!args->src_base || !args->dst_base)
		return kvc_err(-EINVAL, "%s: a NULL device address", fn);
	err = kvc_copy_launch(&k->gpu, args->n, args->bytes, &l);
	if (err)
		return err;
	return launch(k, K_BLOCK_COPY, &l, stream, args);
}
