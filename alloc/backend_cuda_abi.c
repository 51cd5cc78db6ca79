// SPDX-License-Identifier: MIT
/*
 * Build-time check, compiled only where the CUDA toolkit is installed:
 * our mirror of the driver ABI (cuda_driver.h) must match cuda.h. Emits
 * no code and is not linked.
 *
 * cuda.h renames some entry points to their _v2 symbols with macros,
 * which rename the members of struct kvc_cuda_driver of the same name in
 * this file too: each member is then checked against the declaration of
 * the symbol cuda.h really calls.
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
SAME_TYPE(kvc_cu_module, CUmodule);
SAME_TYPE(kvc_cu_function, CUfunction);
/* Enum parameters the table takes as int. */
SAME_TYPE(int, CUdevice_attribute);
SAME_TYPE(int, CUfunction_attribute);
SAME_TYPE(int, CUmemAllocationGranularity_flags);
SAME_TYPE(kvc_cu_result, CUresult);

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
SAME_VALUE(KVC_CUDA_ERROR_NOT_FOUND, CUDA_ERROR_NOT_FOUND);
SAME_VALUE(KVC_CUDA_ERROR_NOT_READY, CUDA_ERROR_NOT_READY);
SAME_VALUE(KVC_CUDA_ERROR_NOT_SUPPORTED, CUDA_ERROR_NOT_SUPPORTED);
SAME_VALUE(KVC_CUDA_ERROR_DEINITIALIZED, CUDA_ERROR_DEINITIALIZED);
SAME_VALUE(KVC_CUDA_ERROR_ECC_UNCORRECTABLE, CUDA_ERROR_ECC_UNCORRECTABLE);
SAME_VALUE(KVC_CUDA_ERROR_ILLEGAL_ADDRESS, CUDA_ERROR_ILLEGAL_ADDRESS);
SAME_VALUE(KVC_CUDA_ERROR_LAUNCH_TIMEOUT, CUDA_ERROR_LAUNCH_TIMEOUT);
SAME_VALUE(KVC_CUDA_ERROR_CONTEXT_IS_DESTROYED,
	   CUDA_ERROR_CONTEXT_IS_DESTROYED);
SAME_VALUE(KVC_CUDA_ERROR_ASSERT, CUDA_ERROR_ASSERT);
SAME_VALUE(KVC_CUDA_ERROR_HARDWARE_STACK_ERROR,
	   CUDA_ERROR_HARDWARE_STACK_ERROR);
SAME_VALUE(KVC_CUDA_ERROR_ILLEGAL_INSTRUCTION, CUDA_ERROR_ILLEGAL_INSTRUCTION);
SAME_VALUE(KVC_CUDA_ERROR_MISALIGNED_ADDRESS, CUDA_ERROR_MISALIGNED_ADDRESS);
SAME_VALUE(KVC_CUDA_ERROR_INVALID_ADDRESS_SPACE,
	   CUDA_ERROR_INVALID_ADDRESS_SPACE);
SAME_VALUE(KVC_CUDA_ERROR_INVALID_PC, CUDA_ERROR_INVALID_PC);
SAME_VALUE(KVC_CUDA_ERROR_LAUNCH_FAILED, CUDA_ERROR_LAUNCH_FAILED);
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
SAME_VALUE(KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
	   CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
SAME_VALUE(KVC_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE,
	   CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE);
SAME_VALUE(KVC_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH,
	   CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
SAME_VALUE(KVC_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE,
	   CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
SAME_VALUE(KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
	   CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
SAME_VALUE(KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
	   CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
SAME_VALUE(KVC_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
	   CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
SAME_VALUE(KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
	   CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);

/*
 * Entry points. SIG(name, ours, theirs): the table's member has type
 * @ours, and cuda.h declares the function with type @theirs. The two
 * parameter lists are written side by side, type for type, and each pair
 * of types is checked above to be the same size, so a member whose
 * signature drifts from cuda.h's fails here.
 */
#define SIG(fn, ours, theirs)                                              \
	_Static_assert(_Generic(((struct kvc_cuda_driver *)0)->fn,         \
				kvc_cu_result(*) ours : 1, default : 0),   \
		       #fn ": the table's member");                        \
	_Static_assert(_Generic(&fn, CUresult(*) theirs : 1, default : 0), \
		       #fn ": cuda.h's declaration")

SIG(cuInit, (unsigned int), (unsigned int));
SIG(cuDeviceGetCount, (int *), (int *));
SIG(cuDeviceGet, (kvc_cu_device *, int), (CUdevice *, int));
SIG(cuDevicePrimaryCtxRetain, (kvc_cu_context *, kvc_cu_device),
    (CUcontext *, CUdevice));
SIG(cuDevicePrimaryCtxRelease, (kvc_cu_device), (CUdevice));
SIG(cuCtxPushCurrent, (kvc_cu_context), (CUcontext));
SIG(cuCtxPopCurrent, (kvc_cu_context *), (CUcontext *));
SIG(cuMemGetAllocationGranularity,
    (size_t *, const struct kvc_cu_alloc_prop *, int),
    (size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags));
SIG(cuMemAddressReserve,
    (kvc_cu_ptr *, size_t, size_t, kvc_cu_ptr, unsigned long long),
    (CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long));
SIG(cuMemAddressFree, (kvc_cu_ptr, size_t), (CUdeviceptr, size_t));
SIG(cuMemCreate,
    (kvc_cu_handle *, size_t, const struct kvc_cu_alloc_prop *,
     unsigned long long),
    (CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
     unsigned long long));
SIG(cuMemRelease, (kvc_cu_handle), (CUmemGenericAllocationHandle));
SIG(cuMemMap, (kvc_cu_ptr, size_t, size_t, kvc_cu_handle, unsigned long long),
    (CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
     unsigned long long));
SIG(cuMemUnmap, (kvc_cu_ptr, size_t), (CUdeviceptr, size_t));
SIG(cuMemSetAccess,
    (kvc_cu_ptr, size_t, const struct kvc_cu_access_desc *, size_t),
    (CUdeviceptr, size_t, const CUmemAccessDesc *, size_t));
SIG(cuStreamCreate, (kvc_cu_stream *, unsigned int),
    (CUstream *, unsigned int));
SIG(cuStreamDestroy, (kvc_cu_stream), (CUstream));
SIG(cuStreamSynchronize, (kvc_cu_stream), (CUstream));
SIG(cuMemcpyDtoDAsync, (kvc_cu_ptr, kvc_cu_ptr, size_t, kvc_cu_stream),
    (CUdeviceptr, CUdeviceptr, size_t, CUstream));
SIG(cuEventCreate, (kvc_cu_event *, unsigned int), (CUevent *, unsigned int));
SIG(cuEventRecord, (kvc_cu_event, kvc_cu_stream), (CUevent, CUstream));
SIG(cuEventQuery, (kvc_cu_event), (CUevent));
SIG(cuEventSynchronize, (kvc_cu_event), (CUevent));
SIG(cuEventDestroy, (kvc_cu_event), (CUevent));
SIG(cuStreamWaitEvent, (kvc_cu_stream, kvc_cu_event, unsigned int),
    (CUstream, CUevent, unsigned int));
SIG(cuGetErrorName, (kvc_cu_result, const char **), (CUresult, const char **));
SIG(cuDeviceGetAttribute, (int *, int, kvc_cu_device),
    (int *, CUdevice_attribute, CUdevice));
SIG(cuModuleLoadData, (kvc_cu_module *, const void *),
    (CUmodule *, const void *));
SIG(cuModuleUnload, (kvc_cu_module), (CUmodule));
SIG(cuModuleGetFunction, (kvc_cu_function *, kvc_cu_module, const char *),
    (CUfunction *, CUmodule, const char *));
SIG(cuFuncSetAttribute, (kvc_cu_function, int, int),
    (CUfunction, CUfunction_attribute, int));
SIG(cuLaunchKernel,
    (kvc_cu_function, unsigned int, unsigned int, unsigned int, unsigned int,
     unsigned int, unsigned int, unsigned int, kvc_cu_stream, void **, void **),
    (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
     unsigned int, unsigned int, unsigned int, CUstream, void **, void **));
SIG(cuMemAlloc, (kvc_cu_ptr *, size_t), (CUdeviceptr *, size_t));
SIG(cuMemFree, (kvc_cu_ptr), (CUdeviceptr));
SIG(cuMemAllocHost, (void **, size_t), (void **, size_t));
SIG(cuMemFreeHost, (void *), (void *));
SIG(cuMemcpyHtoDAsync, (kvc_cu_ptr, const void *, size_t, kvc_cu_stream),
    (CUdeviceptr, const void *, size_t, CUstream));
SIG(cuMemcpyDtoHAsync, (void *, kvc_cu_ptr, size_t, kvc_cu_stream),
    (void *, CUdeviceptr, size_t, CUstream));
SIG(cuMemsetD32Async, (kvc_cu_ptr, unsigned int, size_t, kvc_cu_stream),
    (CUdeviceptr, unsigned int, size_t, CUstream));
SIG(cuMemGetInfo, (size_t *, size_t *), (size_t *, size_t *));
SIG(cuEventElapsedTime, (float *, kvc_cu_event, kvc_cu_event),
    (float *, CUevent, CUevent));

/* ISO C forbids an empty translation unit. */
typedef int kvc_cuda_abi_checked;
