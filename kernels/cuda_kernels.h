/* SPDX-License-Identifier: MIT */
/*
 * The CUDA kernels as the host sees them: a module loaded from the images
 * nvcc built (embedded in the library), and one launcher per kernel that
 * applies a plan from launch.h through cuLaunchKernel. Everything goes
 * through a struct kvc_cuda_driver, so the real driver runs the kernels
 * and the fake driver runs their CPU emulation (emulate.h) instead.
 *
 * No cuda.h: this is plain C. Launchers only queue work on @stream; they
 * return once it is queued. Driver errors come back as -errno (-ENOMEM
 * for out of memory, -EIO for a failed launch, -ENODEV when no kernels
 * were built), with a message through kvc_err().
 */
#ifndef KVC_KERNELS_CUDA_KERNELS_H
#define KVC_KERNELS_CUDA_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "../alloc/cuda_driver.h"
#include "args.h"
#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kvc_cuda_kernels;

/**
 * kvc_cuda_kernels_built() - Whether this library carries kernel images.
 *
 * Return: false when it was built without nvcc: then loading fails with
 * -ENODEV and the GPU path is off.
 */
bool kvc_cuda_kernels_built(void);

/**
 * kvc_cuda_kernels_load() - Load the kernels into the current context.
 * @drv: the driver.
 * @dev: the context's device (its properties shape the plans).
 * @out: the loaded kernels.
 *
 * The caller has made the context current (cuCtxPushCurrent). Reads the
 * device's struct kvc_gpu_info, loads every image, finds every kernel.
 *
 * Return: 0, -ENODEV (no images built, or none for this device), -ENOMEM,
 * -EIO.
 */
int kvc_cuda_kernels_load(const struct kvc_cuda_driver *drv, kvc_cu_device dev,
			  struct kvc_cuda_kernels **out);

/**
 * kvc_cuda_kernels_unload() - Unload (context current). NULL is a no-op.
 * @k: the kernels.
 */
void kvc_cuda_kernels_unload(struct kvc_cuda_kernels *k);

/**
 * kvc_cuda_kernels_gpu() - The device the kernels were loaded for.
 * @k: the kernels.
 *
 * Return: its properties.
 */
const struct kvc_gpu_info *
kvc_cuda_kernels_gpu(const struct kvc_cuda_kernels *k);

/**
 * kvc_cuda_kernels_driver() - The driver the kernels were loaded through.
 * @k: the kernels.
 *
 * Return: the driver table.
 */
const struct kvc_cuda_driver *
kvc_cuda_kernels_driver(const struct kvc_cuda_kernels *k);

/**
 * kvc_cuda_decode() - Queue a decode step (partition and reduce kernels).
 * @k: the kernels.
 * @stream: the stream.
 * @args: the arguments; part_tokens and nr_parts from @plan.
 * @plan: from kvc_decode_plan() for the same shape.
 *
 * Return: 0 or -errno.
 */
int kvc_cuda_decode(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
		    const struct kvc_decode_args *args,
		    const struct kvc_decode_plan *plan);

/**
 * kvc_cuda_prefill() - Queue a prefill (attention, metric and pooling).
 * @k: the kernels.
 * @stream: the stream.
 * @args: the arguments.
 * @plan: from kvc_prefill_plan() for the same shape.
 *
 * Return: 0 or -errno.
 */
int kvc_cuda_prefill(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
		     const struct kvc_prefill_args *args,
		     const struct kvc_prefill_plan *plan);

/**
 * kvc_cuda_cache_write() - Queue a cache write.
 * @k: the kernels.
 * @stream: the stream.
 * @args: the arguments (@args->rows == 0 queues nothing).
 *
 * Return: 0 or -errno.
 */
int kvc_cuda_cache_write(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
			 const struct kvc_cache_write_args *args);

/**
 * kvc_cuda_move() - Queue KV moves (MoveCache).
 * @k: the kernels.
 * @stream: the stream.
 * @args: the arguments (@args->n == 0 queues nothing).
 *
 * Return: 0 or -errno.
 */
int kvc_cuda_move(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
		  const struct kvc_move_args *args);

/**
 * kvc_cuda_block_copy() - Queue a batched copy of equal-sized items.
 * @k: the kernels.
 * @stream: the stream.
 * @args: the arguments (@args->n == 0 queues nothing).
 *
 * Return: 0 or -errno.
 */
int kvc_cuda_block_copy(struct kvc_cuda_kernels *k, kvc_cu_stream stream,
			const struct kvc_copy_args *args);

#ifdef __cplusplus
}
#endif

#endif /* KVC_KERNELS_CUDA_KERNELS_H */
