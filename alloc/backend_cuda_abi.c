// SPDX-License-Identifier: MIT
/*
 * Build-time check, compiled only where the CUDA toolkit is installed:
 * our mirror of the driver ABI (cuda_driver.h) must match cuda.h. Emits
 * no code and is not linked.
 */
#include <cuda.h>
#include <stddef.h>

#include "cuda_driver.h"

#define SAME_TYPE(a, b) _Static_assert(sizeof(a) == sizeof(b), #a " size")
#define SAME_FIELD(a, fa, b, fb) \
	_Static_assert(offsetof(a, fa) == offsetof(b, fb), #a "." #fa)
#define SAME_VALUE(a, b) _Static_assert((int)(a) == (int)(b), #a)

SAME_TYPE(kvc_cu_result, CUresult);
SAME_TYPE(kvc_cu_device, CUdevice);
SAME_TYPE(kvc_cu_context, CUcontext);
SAME_TYPE(kvc_cu_stream, CUstream);
SAME_TYPE(kvc_cu_event, CUevent);
SAME_TYPE(kvc_cu_ptr, CUdeviceptr);
SAME_TYPE(kvc_cu_handle, CUmemGenericAllocationHandle);

SAME_TYPE(struct kvc_cu_location, CUmemLocation);
SAME_FIELD(struct kvc_cu_location, type, CUmemLocation, type);
SAME_FIELD(struct kvc_cu_location, id, CUmemLocation, id);

SAME_TYPE(struct kvc_cu_alloc_prop, CUmemAllocationProp);
SAME_FIELD(struct kvc_cu_alloc_prop, type, CUmemAllocationProp, type);
SAME_FIELD(struct kvc_cu_alloc_prop, requested_handle_types,
	   CUmemAllocationProp, requestedHandleTypes);
SAME_FIELD(struct kvc_cu_alloc_prop, location, CUmemAllocationProp, location);
SAME_FIELD(struct kvc_cu_alloc_prop, win32_handle_meta_data,
	   CUmemAllocationProp, win32HandleMetaData);
SAME_FIELD(struct kvc_cu_alloc_prop, alloc_flags, CUmemAllocationProp,
	   allocFlags);

SAME_TYPE(struct kvc_cu_access_desc, CUmemAccessDesc);
SAME_FIELD(struct kvc_cu_access_desc, location, CUmemAccessDesc, location);
SAME_FIELD(struct kvc_cu_access_desc, flags, CUmemAccessDesc, flags);

SAME_VALUE(KVC_CUDA_SUCCESS, CUDA_SUCCESS);
SAME_VALUE(KVC_CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_INVALID_VALUE);
SAME_VALUE(KVC_CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_OUT_OF_MEMORY);
SAME_VALUE(KVC_CUDA_ERROR_NOT_INITIALIZED, CUDA_ERROR_NOT_INITIALIZED);
SAME_VALUE(KVC_CUDA_ERROR_STUB_LIBRARY, CUDA_ERROR_STUB_LIBRARY);
SAME_VALUE(KVC_CUDA_ERROR_NO_DEVICE, CUDA_ERROR_NO_DEVICE);
SAME_VALUE(KVC_CUDA_ERROR_INVALID_DEVICE, CUDA_ERROR_INVALID_DEVICE);
SAME_VALUE(KVC_CUDA_ERROR_INVALID_CONTEXT, CUDA_ERROR_INVALID_CONTEXT);
SAME_VALUE(KVC_CUDA_ERROR_INVALID_HANDLE, CUDA_ERROR_INVALID_HANDLE);
SAME_VALUE(KVC_CUDA_ERROR_NOT_READY, CUDA_ERROR_NOT_READY);
SAME_VALUE(KVC_CUDA_ERROR_NOT_SUPPORTED, CUDA_ERROR_NOT_SUPPORTED);
SAME_VALUE(KVC_CU_MEM_ALLOCATION_TYPE_PINNED, CU_MEM_ALLOCATION_TYPE_PINNED);
SAME_VALUE(KVC_CU_MEM_HANDLE_TYPE_NONE, CU_MEM_HANDLE_TYPE_NONE);
SAME_VALUE(KVC_CU_MEM_LOCATION_TYPE_DEVICE, CU_MEM_LOCATION_TYPE_DEVICE);
SAME_VALUE(KVC_CU_MEM_ACCESS_FLAGS_PROT_NONE, CU_MEM_ACCESS_FLAGS_PROT_NONE);
SAME_VALUE(KVC_CU_MEM_ACCESS_FLAGS_PROT_READ, CU_MEM_ACCESS_FLAGS_PROT_READ);
SAME_VALUE(KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
	   CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
SAME_VALUE(KVC_CU_MEM_ALLOC_GRANULARITY_MINIMUM,
	   CU_MEM_ALLOC_GRANULARITY_MINIMUM);
SAME_VALUE(KVC_CU_EVENT_DEFAULT, CU_EVENT_DEFAULT);
SAME_VALUE(KVC_CU_EVENT_DISABLE_TIMING, CU_EVENT_DISABLE_TIMING);
SAME_VALUE(KVC_CU_EVENT_WAIT_DEFAULT, CU_EVENT_WAIT_DEFAULT);

/* ISO C forbids an empty translation unit. */
typedef int kvc_cuda_abi_checked;
