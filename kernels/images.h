/* SPDX-License-Identifier: MIT */
/*
 * The kernel images nvcc built, one fat binary per .cu file of kernels/
 * (machine code for sm_80 and sm_90, and PTX for later devices), embedded
 * in the library by a file the build generates. Built without nvcc, the table is
 * empty and the GPU path is off.
 */
#ifndef KVC_KERNELS_IMAGES_H
#define KVC_KERNELS_IMAGES_H

#include <stddef.h>

/**
 * struct kvc_cuda_image - One embedded fat binary.
 * @name: the .cu file it came from, without the suffix ("decode").
 * @data: the image, 16-byte aligned, for cuModuleLoadData().
 * @size: its bytes.
 */
struct kvc_cuda_image {
	const char *name;
	const unsigned char *data;
	size_t size;
};

extern const struct kvc_cuda_image kvc_cuda_images[];
extern const unsigned int kvc_cuda_nr_images;

#endif /* KVC_KERNELS_IMAGES_H */
