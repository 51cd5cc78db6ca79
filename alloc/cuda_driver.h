/* SPDX-License-Identifier: MIT */
/*
 * The slice of the CUDA driver API the cuda backend uses, as a table of
 * entry points. The real table is filled from libcuda.so.1 at run time;
 * the fake driver (fake_driver.c) fills one with host-memory versions.
 *
 * The types, struct layouts, constants and entry-point signatures mirror
 * cuda.h's ABI (checked against the toolkit's cuda.h by
 * backend_cuda_abi.c whenever the toolkit is installed), so the backend
 * builds and runs with no toolkit at all: a driver is all it needs.
 *
 * The members after cuGetErrorName serve the kernels; an older driver may
 * lack some of them, which are then NULL: the VMM path works without
 * them, and the kernels are loaded only when all of them are present.
 */
#ifndef KVC_ALLOC_CUDA_DRIVER_H
#define KVC_ALLOC_CUDA_DRIVER_H

#include <stddef.h>

typedef int kvc_cu_result;
typedef int kvc_cu_device;
typedef void *kvc_cu_context;
typedef void *kvc_cu_stream;
typedef void *kvc_cu_event;
typedef unsigned long long kvc_cu_ptr;
typedef unsigned long long kvc_cu_handle;
typedef void *kvc_cu_module;
typedef void *kvc_cu_function;

/* CUresult values the backend tells apart. */
#define KVC_CUDA_SUCCESS 0
#define KVC_CUDA_ERROR_INVALID_VALUE 1
#define KVC_CUDA_ERROR_OUT_OF_MEMORY 2
#define KVC_CUDA_ERROR_NOT_INITIALIZED 3
#define KVC_CUDA_ERROR_STUB_LIBRARY 34
#define KVC_CUDA_ERROR_NO_DEVICE 100
#define KVC_CUDA_ERROR_INVALID_DEVICE 101
#define KVC_CUDA_ERROR_INVALID_CONTEXT 201
#define KVC_CUDA_ERROR_INVALID_HANDLE 400
#define KVC_CUDA_ERROR_NOT_FOUND 500
#define KVC_CUDA_ERROR_NOT_READY 600
#define KVC_CUDA_ERROR_NOT_SUPPORTED 801
/* Errors that leave the context unusable: its work has stopped. */
#define KVC_CUDA_ERROR_DEINITIALIZED 4
#define KVC_CUDA_ERROR_ECC_UNCORRECTABLE 214
#define KVC_CUDA_ERROR_ILLEGAL_ADDRESS 700
#define KVC_CUDA_ERROR_LAUNCH_TIMEOUT 702
#define KVC_CUDA_ERROR_CONTEXT_IS_DESTROYED 709
#define KVC_CUDA_ERROR_ASSERT 710
#define KVC_CUDA_ERROR_HARDWARE_STACK_ERROR 714
#define KVC_CUDA_ERROR_ILLEGAL_INSTRUCTION 715
#define KVC_CUDA_ERROR_MISALIGNED_ADDRESS 716
#define KVC_CUDA_ERROR_INVALID_ADDRESS_SPACE 717
#define KVC_CUDA_ERROR_INVALID_PC 718
#define KVC_CUDA_ERROR_LAUNCH_FAILED 719

/* Enumerators of the VMM structs. */
#define KVC_CU_MEM_ALLOCATION_TYPE_PINNED 1
#define KVC_CU_MEM_HANDLE_TYPE_NONE 0
#define KVC_CU_MEM_LOCATION_TYPE_DEVICE 1
#define KVC_CU_MEM_ACCESS_FLAGS_PROT_NONE 0
#define KVC_CU_MEM_ACCESS_FLAGS_PROT_READ 1
#define KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE 3
#define KVC_CU_MEM_ALLOC_GRANULARITY_MINIMUM 0

/* Event flags (CUevent_flags) and stream-wait flags (CUevent_wait_flags). */
#define KVC_CU_EVENT_DEFAULT 0x0
#define KVC_CU_EVENT_DISABLE_TIMING 0x2
#define KVC_CU_EVENT_WAIT_DEFAULT 0x0

/* Device attributes (CUdevice_attribute) the kernels' launch logic reads. */
#define KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define KVC_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE 36
#define KVC_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH 37
#define KVC_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE 38
#define KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define KVC_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97
/* CUfunction_attribute */
#define KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8

/* CUmemLocation */
struct kvc_cu_location {
	int type;
	int id;
};

/* CUmemAllocationProp */
struct kvc_cu_alloc_prop {
	int type;
	int requested_handle_types;
	struct kvc_cu_location location;
	void *win32_handle_meta_data;
	struct {
		unsigned char compression_type;
		unsigned char gpu_direct_rdma_capable;
		unsigned short usage;
		unsigned char reserved[4];
	} alloc_flags;
};

/* CUmemAccessDesc */
struct kvc_cu_access_desc {
	struct kvc_cu_location location;
	int flags;
};

/**
 * struct kvc_cuda_driver - Driver entry points, named as in cuda.h.
 * @name: backend name to report ("cuda" or "cuda-fake").
 *
 * Each member has the signature of the cuda.h function of the same name
 * (the _v2 symbol where cuda.h maps one to it).
 */
struct kvc_cuda_driver {
	const char *name;
	kvc_cu_result (*cuInit)(unsigned int flags);
	kvc_cu_result (*cuDeviceGetCount)(int *count);
	kvc_cu_result (*cuDeviceGet)(kvc_cu_device *dev, int ordinal);
	kvc_cu_result (*cuDevicePrimaryCtxRetain)(kvc_cu_context *ctx,
						  kvc_cu_device dev);
	kvc_cu_result (*cuDevicePrimaryCtxRelease)(kvc_cu_device dev);
	kvc_cu_result (*cuCtxPushCurrent)(kvc_cu_context ctx);
	kvc_cu_result (*cuCtxPopCurrent)(kvc_cu_context *ctx);
	kvc_cu_result (*cuMemGetAllocationGranularity)(
		size_t *granularity, const struct kvc_cu_alloc_prop *prop,
		int option);
	kvc_cu_result (*cuMemAddressReserve)(kvc_cu_ptr *ptr, size_t size,
					     size_t alignment, kvc_cu_ptr addr,
					     unsigned long long flags);
	kvc_cu_result (*cuMemAddressFree)(kvc_cu_ptr ptr, size_t size);
	kvc_cu_result (*cuMemCreate)(kvc_cu_handle *handle, size_t size,
				     const struct kvc_cu_alloc_prop *prop,
				     unsigned long long flags);
	kvc_cu_result (*cuMemRelease)(kvc_cu_handle handle);
	kvc_cu_result (*cuMemMap)(kvc_cu_ptr ptr, size_t size, size_t offset,
				  kvc_cu_handle handle,
				  unsigned long long flags);
	kvc_cu_result (*cuMemUnmap)(kvc_cu_ptr ptr, size_t size);
	kvc_cu_result (*cuMemSetAccess)(kvc_cu_ptr ptr, size_t size,
					const struct kvc_cu_access_desc *desc,
					size_t count);
	kvc_cu_result (*cuStreamCreate)(kvc_cu_stream *stream,
					unsigned int flags);
	kvc_cu_result (*cuStreamDestroy)(kvc_cu_stream stream);
	kvc_cu_result (*cuStreamSynchronize)(kvc_cu_stream stream);
	kvc_cu_result (*cuMemcpyDtoDAsync)(kvc_cu_ptr dst, kvc_cu_ptr src,
					   size_t bytes, kvc_cu_stream stream);
	kvc_cu_result (*cuEventCreate)(kvc_cu_event *event, unsigned int flags);
	kvc_cu_result (*cuEventRecord)(kvc_cu_event event,
				       kvc_cu_stream stream);
	kvc_cu_result (*cuEventQuery)(kvc_cu_event event);
	kvc_cu_result (*cuEventSynchronize)(kvc_cu_event event);
	kvc_cu_result (*cuEventDestroy)(kvc_cu_event event);
	kvc_cu_result (*cuStreamWaitEvent)(kvc_cu_stream stream,
					   kvc_cu_event event,
					   unsigned int flags);
	kvc_cu_result (*cuGetErrorName)(kvc_cu_result err, const char **name);
	/* Kernels, device memory for their arguments, measurements. */
	kvc_cu_result (*cuDeviceGetAttribute)(int *value, int attrib,
					      kvc_cu_device dev);
	kvc_cu_result (*cuModuleLoadData)(kvc_cu_module *module,
					  const void *image);
	kvc_cu_result (*cuModuleUnload)(kvc_cu_module module);
	kvc_cu_result (*cuModuleGetFunction)(kvc_cu_function *fn,
					     kvc_cu_module module,
					     const char *name);
	kvc_cu_result (*cuFuncSetAttribute)(kvc_cu_function fn, int attrib,
					    int value);
	kvc_cu_result (*cuLaunchKernel)(kvc_cu_function fn, unsigned int gx,
					unsigned int gy, unsigned int gz,
					unsigned int bx, unsigned int by,
					unsigned int bz, unsigned int shmem,
					kvc_cu_stream stream, void **params,
					void **extra);
	kvc_cu_result (*cuMemAlloc)(kvc_cu_ptr *ptr, size_t bytes);
	kvc_cu_result (*cuMemFree)(kvc_cu_ptr ptr);
	kvc_cu_result (*cuMemAllocHost)(void **ptr, size_t bytes);
	kvc_cu_result (*cuMemFreeHost)(void *ptr);
	kvc_cu_result (*cuMemcpyHtoDAsync)(kvc_cu_ptr dst, const void *src,
					   size_t bytes, kvc_cu_stream stream);
	kvc_cu_result (*cuMemcpyDtoHAsync)(void *dst, kvc_cu_ptr src,
					   size_t bytes, kvc_cu_stream stream);
	kvc_cu_result (*cuMemsetD32Async)(kvc_cu_ptr dst, unsigned int value,
					  size_t count, kvc_cu_stream stream);
	kvc_cu_result (*cuMemGetInfo)(size_t *free_bytes, size_t *total_bytes);
	kvc_cu_result (*cuEventElapsedTime)(float *ms, kvc_cu_event start,
					    kvc_cu_event end);
};

#endif /* KVC_ALLOC_CUDA_DRIVER_H */
