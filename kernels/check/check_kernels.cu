// Compiles every kernels/ header and instantiates every kernel template that csrc/ launches, with no
// torch include path on the command line: the build itself enforces "kernels/ never includes torch".
#include "check/block_replay.cuh"
#include "common/fastdiv.cuh"
#include "common/gemm_loader.cuh"
#include "common/gemm_math.cuh"
#include "common/gemm_tile.cuh"
#include "common/implicit_gemm.cuh"
#include "common/macros.cuh"
#include "common/numeric.cuh"
#include "conv/conv2d.cuh"
#include "conv/conv2d_dgrad.cuh"
#include "conv/conv2d_fwd.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"
#include "conv/conv2d_wgrad.cuh"

namespace cnnkern {

#define CNNKERN_CHECK_GEMM(...) template __global__ void implicit_gemm_kernel<__VA_ARGS__>(const __VA_ARGS__)

#define CNNKERN_CHECK_TYPE(T, V)                                      \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kRow, 1>);             \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kK, 1>);               \
  CNNKERN_CHECK_GEMM(Conv2dFwdProblem<T, Fast::kK, V>);               \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kRow, 1>);           \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kK, 1>);             \
  CNNKERN_CHECK_GEMM(Conv2dDgradProblem<T, Fast::kK, V>);             \
  CNNKERN_CHECK_GEMM(Conv2dWgradProblem<T, Fast::kK>);                \
  CNNKERN_CHECK_GEMM(Conv2dWgradProblem<T, Fast::kRow>);              \
  template __global__ void conv2d_wgrad_reduce_kernel<T>(const Conv2dWgradReduce<T>)

CNNKERN_CHECK_TYPE(float, 4);
CNNKERN_CHECK_TYPE(__half, 8);
CNNKERN_CHECK_TYPE(__nv_bfloat16, 8);

}  // namespace cnnkern
