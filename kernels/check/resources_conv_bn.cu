// The kernels of fused conv + BatchNorm (issue 12) that ResNet-50 / MobileNetV2 training runs most, in one
// small translation unit for static resource checks without a GPU (registers, spills, shared memory; SASS
// for 128-bit global accesses and local-memory traffic). Not part of any build target; kernels/conv/
// conv_bn_relu.md has the table this produced and the commands:
//
//   nvcc -arch=sm_90 -O3 -std=c++17 --expt-relaxed-constexpr -Xptxas -v -cubin -I kernels \
//        -o /tmp/conv_bn.cubin kernels/check/resources_conv_bn.cu
//   $(python -c "import triton, os; print(os.path.dirname(triton.__file__))")/backends/nvidia/bin/cuobjdump \
//        -sass /tmp/conv_bn.cubin
#include "conv/conv2d_fwd.cuh"
#include "conv/conv_bn_relu.cuh"
#include "conv/depthwise_conv2d.cuh"

namespace cnnkern {

#define CNNKERN_RES_GEMM(...) template __global__ void implicit_gemm_kernel<__VA_ARGS__>(const __VA_ARGS__)

// conv2d forward, channels_last 16-byte gathers: plain (for comparison), act, statistics.
CNNKERN_RES_GEMM(Conv2dFwdProblem<__half, Fast::kK, 8, EpiKind::kPlain>);
CNNKERN_RES_GEMM(Conv2dFwdProblem<__half, Fast::kK, 8, EpiKind::kAct>);
CNNKERN_RES_GEMM(Conv2dFwdProblem<__half, Fast::kK, 8, EpiKind::kStats>);
CNNKERN_RES_GEMM(Conv2dFwdProblem<__nv_bfloat16, Fast::kK, 8, EpiKind::kStats>);
CNNKERN_RES_GEMM(Conv2dFwdProblem<float, Fast::kRow, 1, EpiKind::kStats>);

// depthwise: channels_last 3x3 window kernel and the scalar fallback; NCHW tiled 3x3.
template __global__ void dw_direct_kernel<__half, 8, 1, 3, false, EpiKind::kPlain>(const DwDirectParams<__half>);
template __global__ void dw_direct_kernel<__half, 8, 1, 3, false, EpiKind::kAct>(const DwDirectParams<__half>);
template __global__ void dw_direct_kernel<__half, 8, 1, 3, false, EpiKind::kStats>(const DwDirectParams<__half>);
template __global__ void dw_direct_kernel<__half, 1, 1, 0, false, EpiKind::kStats>(const DwDirectParams<__half>);
template __global__ void dw_tiled_kernel<__half, 3, EpiKind::kPlain>(const DwTiledParams<__half>);
template __global__ void dw_tiled_kernel<__half, 3, EpiKind::kAct>(const DwTiledParams<__half>);
template __global__ void dw_tiled_kernel<__half, 3, EpiKind::kStats>(const DwTiledParams<__half>);

// conv_bn_relu elementwise: every op, fp16 and fp32, both iterations, 16-byte and scalar access.
#define CNNKERN_RES_BN(T, K, A, CL, V) template __global__ void bn_kernel<T, K, A, CL, V, int32_t>(const BnParams<T>)
CNNKERN_RES_BN(__half, BnOp::kNormalize, kActRelu, true, 8);
CNNKERN_RES_BN(__half, BnOp::kNormalize, kActSilu, true, 8);
CNNKERN_RES_BN(__half, BnOp::kReduce, kActRelu, true, 8);
CNNKERN_RES_BN(__half, BnOp::kReduce, kActSilu, true, 8);
CNNKERN_RES_BN(__half, BnOp::kApply, kActRelu, true, 8);
CNNKERN_RES_BN(__half, BnOp::kApply, kActSilu, true, 8);
CNNKERN_RES_BN(__half, BnOp::kNormalize, kActRelu, false, 8);
CNNKERN_RES_BN(__half, BnOp::kReduce, kActRelu, false, 8);
CNNKERN_RES_BN(__half, BnOp::kApply, kActRelu, false, 8);
CNNKERN_RES_BN(__half, BnOp::kApply, kActRelu, true, 1);
CNNKERN_RES_BN(float, BnOp::kNormalize, kActRelu, true, 4);
CNNKERN_RES_BN(float, BnOp::kReduce, kActRelu, true, 4);
CNNKERN_RES_BN(float, BnOp::kApply, kActRelu, true, 4);
template __global__ void bn_kernel<__half, BnOp::kApply, kActRelu, true, 8, int64_t>(const BnParams<__half>);
template __global__ void bn_finalize_kernel<float>(const BnFinalizeParams);

}  // namespace cnnkern
