// Host side of cnnkern_cuda::conv_bn_relu_{normalize,bwd_reduce,bwd_apply}: the BatchNorm + activation passes
// around a conv output y (kernel contract: cnnkern/problem/conv_bn.py; kernels: kernels/conv/conv_bn_relu.cuh).
// Argument checks (a defence behind the Python-side validation), the plan (iteration from y's layout,
// 16-byte access where every tensor allows it, int64 offsets only where a tensor needs them), dtype
// dispatch, launches on the current stream. Outputs are preallocated by the caller with any strides.
#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "cuda/conv_bn_relu_launch.h"
#include "cuda/host_common.h"
#include "cuda/host_epilogue.h"
#include "cuda/host_ops.h"

namespace cnnkern {
namespace {

using namespace host;

// Pixel (and per-channel item) indices are int32 in the kernels, with up to a grid step of overshoot.
constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - (int64_t{1} << 22);

void check_activation_tensor(const char* op, const char* name, const at::Tensor& t, const at::Tensor& y) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-D, got shape ", t.sizes());
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a strided (dense) tensor");
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got device ", t.device());
  TORCH_CHECK(t.device() == y.device(), op, ": ", name, " is on ", t.device(), " but y is on ", y.device());
  TORCH_CHECK(t.scalar_type() == y.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(), " but y is ",
              y.scalar_type());
  TORCH_CHECK(t.sizes() == y.sizes(), op, ": ", name, " has shape ", t.sizes(), " but y has shape ", y.sizes());
}

// The per-channel vectors: fp32 (C), on y's device, any stride.
void check_channel(const char* op, const char* name, const at::Tensor& v, const at::Tensor& y) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == y.size(1), op, ": ", name, " must have shape (C=", y.size(1), "), got ",
              v.sizes());
  TORCH_CHECK(v.device() == y.device(), op, ": ", name, " is on ", v.device(), " but y is on ", y.device());
  TORCH_CHECK(v.scalar_type() == at::kFloat, op, ": ", name, " must be float32 (the statistics' precision), got ",
              v.scalar_type());
}

void check_y(const char* op, const at::Tensor& y, int64_t activation) {
  TORCH_CHECK(y.dim() == 4, op, ": y must be 4-D (N, C, H, W), got shape ", y.sizes());
  TORCH_CHECK(y.layout() == at::kStrided && y.is_cuda(), op, ": y must be a strided CUDA tensor");
  check_dtype(op, y);
  check_activation(op, activation);
  TORCH_CHECK(y.size(0) * y.size(2) * y.size(3) <= kIndexLimit && y.size(1) <= kIndexLimit, op, ": y of shape ",
              y.sizes(), " exceeds the 32-bit pixel index limit; split the batch");
}

BnVec vec(const at::Tensor& t) { return BnVec{t.const_data_ptr<float>(), t.stride(0)}; }

template <class T>
BnParams<T> params(const at::Tensor& y) {
  BnParams<T> p{};
  p.n = static_cast<int>(y.size(0));
  p.c = static_cast<int>(y.size(1));
  p.h = static_cast<int>(y.size(2));
  p.w = static_cast<int>(y.size(3));
  p.y = in_ptr<T>(y);
  p.ys = strides_of(y);
  return p;
}

}  // namespace

// ---- ops (declared in cuda/host_ops.h) -----------------------------------------------------------

namespace cuda {

void conv_bn_relu_normalize(const at::Tensor& y, const at::Tensor& a, const at::Tensor& b, const at::Tensor& out,
                            int64_t activation) {
  constexpr const char* op = "cnnkern conv_bn_relu_normalize";
  check_y(op, y, activation);
  check_activation_tensor(op, "out", out, y);
  check_channel(op, "a", a, y);
  check_channel(op, "b", b, y);
  check_output(op, "out", out, {y, a, b});
  c10::cuda::CUDAGuard guard(y.device());
  if (y.numel() == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch("cnnkern conv_bn_relu", y.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    BnParams<T> p = params<T>(y);
    p.out = out_ptr<T>(out);
    p.os = strides_of(out);
    p.vec[kBnA] = vec(a);
    p.vec[kBnB] = vec(b);
    bn_plan(&p, BnOp::kNormalize);
    launch_bn_normalize<T>(p, static_cast<int>(activation), stream);
  });
}

void conv_bn_relu_bwd_reduce(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                             const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& sum_dz,
                             const at::Tensor& sum_dz_xhat, int64_t activation) {
  constexpr const char* op = "cnnkern conv_bn_relu_bwd_reduce";
  check_y(op, y, activation);
  check_activation_tensor(op, "grad", grad, y);
  check_channel(op, "a", a, y);
  check_channel(op, "b", b, y);
  check_channel(op, "mean", mean, y);
  check_channel(op, "invstd", invstd, y);
  check_channel(op, "sum_dz", sum_dz, y);
  check_channel(op, "sum_dz_xhat", sum_dz_xhat, y);
  check_output(op, "sum_dz", sum_dz, {grad, y, a, b, mean, invstd, sum_dz_xhat});
  check_output(op, "sum_dz_xhat", sum_dz_xhat, {grad, y, a, b, mean, invstd});
  c10::cuda::CUDAGuard guard(y.device());
  if (y.size(1) == 0) return;
  if (y.numel() == 0) {  // empty sums
    sum_dz.zero_();
    sum_dz_xhat.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch("cnnkern conv_bn_relu", y.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    BnParams<T> p = params<T>(y);
    p.grad = in_ptr<T>(grad);
    p.gs = strides_of(grad);
    p.vec[kBnA] = vec(a);
    p.vec[kBnB] = vec(b);
    p.vec[kBnMean] = vec(mean);
    p.vec[kBnInvstd] = vec(invstd);
    bn_plan(&p, BnOp::kReduce);
    // Every element is written by the first pass (one row per split and channel).
    at::Tensor partials = at::empty({p.splits, p.c, 2}, y.options().dtype(at::kFloat));
    p.partials = partials.mutable_data_ptr<float>();
    const BnFinalizeParams f{p.partials,         p.splits, p.c, sum_dz.mutable_data_ptr<float>(), sum_dz.stride(0),
                             sum_dz_xhat.mutable_data_ptr<float>(), sum_dz_xhat.stride(0)};
    launch_bn_reduce<T>(p, static_cast<int>(activation), f, stream);
  });
}

void conv_bn_relu_bwd_apply(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                            const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& k_dz,
                            const at::Tensor& k_one, const at::Tensor& k_xhat, const at::Tensor& out,
                            int64_t activation) {
  constexpr const char* op = "cnnkern conv_bn_relu_bwd_apply";
  check_y(op, y, activation);
  check_activation_tensor(op, "grad", grad, y);
  check_activation_tensor(op, "out", out, y);
  const at::Tensor* vecs[] = {&a, &b, &mean, &invstd, &k_dz, &k_one, &k_xhat};
  const char* names[] = {"a", "b", "mean", "invstd", "k_dz", "k_one", "k_xhat"};
  for (int k = 0; k < kBnVecs; ++k) check_channel(op, names[k], *vecs[k], y);
  check_output(op, "out", out, {grad, y, a, b, mean, invstd, k_dz, k_one, k_xhat});
  c10::cuda::CUDAGuard guard(y.device());
  if (y.numel() == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch("cnnkern conv_bn_relu", y.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    BnParams<T> p = params<T>(y);
    p.grad = in_ptr<T>(grad);
    p.gs = strides_of(grad);
    p.out = out_ptr<T>(out);
    p.os = strides_of(out);
    for (int k = 0; k < kBnVecs; ++k) p.vec[k] = vec(*vecs[k]);
    bn_plan(&p, BnOp::kApply);
    launch_bn_apply<T>(p, static_cast<int>(activation), stream);
  });
}

}  // namespace cuda

// The out-variant ops (contract: cnnkern/problem/conv_bn.py); activation: 0 none, 1 relu, 2 relu6, 3 silu.
TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def("conv_bn_relu_normalize(Tensor y, Tensor a, Tensor b, Tensor(a!) out, int activation) -> ()");
  m.def(
      "conv_bn_relu_bwd_reduce(Tensor grad, Tensor y, Tensor a, Tensor b, Tensor mean, Tensor invstd, "
      "Tensor(a!) sum_dz, Tensor(b!) sum_dz_xhat, int activation) -> ()");
  m.def(
      "conv_bn_relu_bwd_apply(Tensor grad, Tensor y, Tensor a, Tensor b, Tensor mean, Tensor invstd, Tensor k_dz, "
      "Tensor k_one, Tensor k_xhat, Tensor(a!) out, int activation) -> ()");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("conv_bn_relu_normalize", &cuda::conv_bn_relu_normalize);
  m.impl("conv_bn_relu_bwd_reduce", &cuda::conv_bn_relu_bwd_reduce);
  m.impl("conv_bn_relu_bwd_apply", &cuda::conv_bn_relu_bwd_apply);
}

}  // namespace cnnkern
