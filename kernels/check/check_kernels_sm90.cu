// Every instantiation of the sm_90a conv2d forward and weight gradient that csrc/cuda/conv2d_{fwd,wgrad}_sm90.cu
// launch, compiled torch-free for sm_90a (CMake target cnnkern_kernels_check_sm90a: CUDA_ARCHITECTURES 90a),
// so that the wgmma / TMA / mbarrier inline PTX is assembled by ptxas in CI even without a torch build.
#include "conv/conv2d_fwd_sm90.cuh"
#include "conv/conv2d_wgrad_sm90.cuh"

namespace cnnkern {
namespace sm90 {

#define CNNKERN_CHECK_SM90(T, E, BN) \
  template __global__ void conv2d_fwd_sm90_kernel<T, E, BN>(const __grid_constant__ CUtensorMap, const FwdArgs<T, E, BN>)

CNNKERN_CHECK_SM90(__half, EpiKind::kPlain, 64);
CNNKERN_CHECK_SM90(__half, EpiKind::kPlain, 128);
CNNKERN_CHECK_SM90(__half, EpiKind::kAct, 64);
CNNKERN_CHECK_SM90(__half, EpiKind::kAct, 128);
CNNKERN_CHECK_SM90(__nv_bfloat16, EpiKind::kPlain, 64);
CNNKERN_CHECK_SM90(__nv_bfloat16, EpiKind::kPlain, 128);
CNNKERN_CHECK_SM90(__nv_bfloat16, EpiKind::kAct, 64);
CNNKERN_CHECK_SM90(__nv_bfloat16, EpiKind::kAct, 128);
CNNKERN_CHECK_SM90(__half, EpiKind::kStats, 64);
CNNKERN_CHECK_SM90(__half, EpiKind::kStats, 128);
CNNKERN_CHECK_SM90(__nv_bfloat16, EpiKind::kStats, 64);
CNNKERN_CHECK_SM90(__nv_bfloat16, EpiKind::kStats, 128);

#define CNNKERN_CHECK_WGRAD_SM90(T, BM) \
  template __global__ void conv2d_wgrad_sm90_kernel<T, BM>(const __grid_constant__ CUtensorMap, const WgradArgs<T, BM>)

CNNKERN_CHECK_WGRAD_SM90(__half, 64);
CNNKERN_CHECK_WGRAD_SM90(__half, 128);
CNNKERN_CHECK_WGRAD_SM90(__nv_bfloat16, 64);
CNNKERN_CHECK_WGRAD_SM90(__nv_bfloat16, 128);

}  // namespace sm90
}  // namespace cnnkern
