// Host helpers of the sm_90a launches (conv2d_fwd_sm90.cu, conv2d_wgrad_sm90.cu): the opt-in switch, a
// device attribute, and a 2-D TMA descriptor. The CUtensorMap is encoded with cuTensorMapEncodeTiled
// obtained from the driver at run time (cudaGetDriverEntryPointByVersion; the plain cudaGetDriverEntryPoint
// is deprecated in CUDA 13), so the extension does not link against libcuda.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include "common/sm90/tma.cuh"

namespace cnnkern {

// CNNKERN_SM90_WGMMA=1, read once.
inline bool sm90_env_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("CNNKERN_SM90_WGMMA");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

inline int sm90_device_attr(cudaDeviceAttr a, int device) {
  int v = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, a, device));
  return v;
}

inline PFN_cuTensorMapEncodeTiled_v12000 sm90_encode_tiled() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = []() -> PFN_cuTensorMapEncodeTiled_v12000 {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// A 2-D tiled map over a 16-bit matrix at `base` with the geometry g, 128-byte swizzle (the layout the
// wgmma descriptors of common/sm90/wgmma.cuh read), out-of-bounds elements read as zero.
template <class T>
CUtensorMap sm90_encode_map_2d(const sm90::Map2dGeometry& g, const T* base, const char* op) {
  static_assert(sizeof(T) == 2, "the sm_90a kernels take fp16 / bf16");
  const PFN_cuTensorMapEncodeTiled_v12000 encode = sm90_encode_tiled();
  TORCH_CHECK(encode != nullptr, op, ": cuTensorMapEncodeTiled is not available from the driver");
  constexpr CUtensorMapDataType type =
      std::is_same<T, __half>::value ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  CUtensorMap map;
  const cuuint64_t dims[2] = {g.dims[0], g.dims[1]};
  const cuuint64_t strides[1] = {g.row_bytes};
  const cuuint32_t box[2] = {g.box[0], g.box[1]};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode(&map, type, 2, const_cast<T*>(base), dims, strides, box, elem_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  TORCH_CHECK(r == CUDA_SUCCESS, op, ": cuTensorMapEncodeTiled failed with ", static_cast<int>(r));
  return map;
}

}  // namespace cnnkern
