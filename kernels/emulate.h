/* SPDX-License-Identifier: MIT */
/*
 * The CUDA kernels run on the CPU, by name and argument struct, the way
 * the fake driver's cuLaunchKernel runs them: same workspace layouts,
 * same partitions, same math (attention_math.h), so the host code that
 * plans, fills arguments and launches is tested without a GPU. Device
 * addresses are host addresses here (the fake driver's memory is host
 * memory).
 */
#ifndef KVC_KERNELS_EMULATE_H
#define KVC_KERNELS_EMULATE_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * kvc_emulate_known() - Whether a kernel of this name can be emulated.
 * @name: the kernel's name, as cuModuleGetFunction() takes it.
 *
 * Return: true for every kernel the CUDA files define.
 */
bool kvc_emulate_known(const char *name);

/**
 * kvc_emulate_launch() - Run one launch of a kernel on the CPU.
 * @name: the kernel.
 * @grid: the grid (x, y, z).
 * @threads: threads per CTA.
 * @smem: dynamic shared memory per CTA.
 * @params: the kernel's parameters, as cuLaunchKernel() takes them: one
 *          pointer, to the kernel's argument struct (args.h).
 *
 * Return: 0, or 1 (CUDA_ERROR_INVALID_VALUE) for an unknown kernel, a
 * grid or thread count that does not match what the kernel's arguments
 * need, or arguments a kernel would fault on; nothing is written then.
 */
int kvc_emulate_launch(const char *name, const unsigned int grid[3],
		       unsigned int threads, unsigned int smem,
		       void *const *params);

#ifdef __cplusplus
}
#endif

#endif /* KVC_KERNELS_EMULATE_H */
