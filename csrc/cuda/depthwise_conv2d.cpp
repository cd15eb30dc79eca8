// Host side of cnnkern_cuda::depthwise_conv2d_{fwd,bwd_input,bwd_weight} (groups == C_in, weight
// (C_in*m, 1, KH, KW)): argument checks (a defence behind the Python-side validation), dtype dispatch,
// choice of kernel per layout, launches on the current stream. Every tensor is addressed through its
// strides; outputs are preallocated by the caller and nothing is made contiguous.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "cuda/depthwise_conv2d_launch.h"
#include "cuda/host_common.h"
#include "cuda/host_epilogue.h"
#include "cuda/host_ops.h"

namespace cnnkern {
namespace {

using namespace host;

// Pixel indices (n, y, x) and plane indices (n, c) are int32 in the kernels, with some overshoot.
constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - 65536;

void check_dtype_and_device(const char* op, const at::Tensor& t) {
  check_dtype(op, t);
  const int major = device_attribute(cudaDevAttrComputeCapabilityMajor, t.get_device());
  TORCH_CHECK(major >= 8, op, ": the depthwise kernels need compute capability >= 8.0; ", t.device(), " is sm_",
              major, "x");
}

// x_like (N, C, H, W), w_like (C*m, 1, KH, KW), y_like (N, C*m, OH, OW).
DwShape make_shape(const char* op, const at::Tensor& x_like, const at::Tensor& w_like, const at::Tensor& y_like,
                   const char* x_name, const char* w_name, const char* y_name, const ConvArgs& a) {
  const int64_t n = x_like.size(0), c = x_like.size(1), h = x_like.size(2), w = x_like.size(3);
  const int64_t c_out = w_like.size(0), kh = w_like.size(2), kw = w_like.size(3);
  TORCH_CHECK(w_like.size(1) == 1, op, ": depthwise ", w_name, " must have shape (C*multiplier, 1, KH, KW), got ",
              w_like.sizes());
  TORCH_CHECK(c > 0 ? (c_out >= c && c_out % c == 0) : c_out == 0, op, ": ", w_name, " shape ", w_like.sizes(),
              " has ", c_out, " output channels, which must be a positive multiple of the ", c, " channels of ",
              x_name, " shape ", x_like.sizes());
  check_out_shape(op, x_like, w_like, y_like, x_name, w_name, y_name, a);
  const int64_t oh = y_like.size(2), ow = y_like.size(3);
  // Pixel groups of a row overshoot the width by up to one group of 4 pixels per stride residue.
  const int64_t row = std::max(w, ow) + 4 * std::max(a.stride[0], a.stride[1]) + 4;
  TORCH_CHECK(n * std::max(h, oh) * row <= kIndexLimit, op, ": N*H*W = ", n * h * w, " / N*OH*OW = ", n * oh * ow,
              " exceed the 32-bit pixel index limit; split the batch");
  TORCH_CHECK(n * c_out <= kIndexLimit, op, ": N*C_out = ", n * c_out,
              " exceeds the 32-bit plane index limit; split the batch");
  TORCH_CHECK(c_out * kh * kw <= kIndexLimit, op, ": filter too large for 32-bit indexing, ", w_name, " shape ",
              w_like.sizes());
  auto i = [](int64_t v) { return static_cast<int>(v); };
  const int64_t mult = c > 0 ? c_out / c : 1;
  return DwShape{i(n),  i(c),  i(h),  i(w),  i(mult), i(c_out), i(oh), i(ow), i(kh), i(kw),
                 i(a.stride[0]), i(a.stride[1]), i(a.pad[0]), i(a.pad[1]), i(a.dil[0]), i(a.dil[1])};
}

constexpr OpFamily<DwShape> kDepthwise{"cnnkern depthwise_conv2d", &check_dtype_and_device, &make_shape};

// Largest dynamic shared memory a block may opt into on the current device.
size_t smem_optin_limit(int device) {
  const int bytes = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  return static_cast<size_t>(std::max(bytes, 48 * 1024));
}

// The kernel a gather problem (forward, or input-grad) runs on: dw_plan_gather (shared with the
// emulator), with this device's opt-in shared memory and multiprocessor count.
template <class T>
DwGatherPlan<T> plan_gather(const DwGather<T>& g, bool channel_fast, int vmax, int mi, int device, bool stats) {
  const DwGatherPlan<T> plan = dw_plan_gather(g, channel_fast, vmax, mi, smem_optin_limit(device),
                                              device_attribute(cudaDevAttrMultiProcessorCount, device), stats);
  TORCH_CHECK(plan.tiled || (plan.column ? plan.cp.grid_x : plan.dp.grid_x) < (1u << 31),
              "cnnkern depthwise_conv2d: too many blocks for one launch (",
              g.n, " x ", g.out_c, " x ", g.out_h, " x ", g.out_w, " outputs); split the batch");
  return plan;
}

template <class T>
void launch_gather(const DwGatherPlan<T>& plan, cudaStream_t stream) {
  if (plan.tiled) {
    launch_dw_tiled<T>(plan.tp, stream);
  } else if (plan.column) {
    launch_dw_column<T>(plan.cp, plan.v, stream);
  } else {
    launch_dw_direct<T>(plan.dp, plan.v, plan.mi, plan.win, stream);
  }
}

template <class T>
void run_gather(const DwGather<T>& g, bool channel_fast, int vmax, int mi, int device, cudaStream_t stream) {
  launch_gather<T>(plan_gather(g, channel_fast, vmax, mi, device, false), stream);
}

// The forward's gather problem and layout choice (shared by the plain forward and its epilogues).
template <class T>
DwGather<T> fwd_gather(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                       const at::Tensor& out, const DwShape& s, bool has_bias, bool& channel_fast, int& vmax) {
  channel_fast = channels_fast(x);
  // A vector of v output channels reads v/m input channels (dw_vec_width: m is 1, or 2 with 16 bytes).
  vmax = channel_fast ? dw_vec_width<T>(static_cast<int>(s.c_out), s.mult, [&](int v) {
    return vec_ok(x, v / s.mult) && vec_ok(out, v);
  }) : 1;
  return dw_fwd_gather<T>(s, in_ptr<T>(x), strides_of(x), in_ptr<T>(w), strides_of(w),
                          has_bias ? in_ptr<T>(*bias) : nullptr, has_bias ? bias->stride(0) : 0, out_ptr<T>(out),
                          strides_of(out));
}

// The forward's plan (gather problem, layout choice, kernel): the prologue of the plain, act and stats
// forwards and of the statistics' tile count (stats: the plan as the stats epilogue will launch it).
template <class T>
DwGatherPlan<T> fwd_plan(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                         const at::Tensor& out, const DwShape& s, bool has_bias, bool stats) {
  bool channel_fast;
  int vmax;
  const DwGather<T> g = fwd_gather<T>(x, w, bias, out, s, has_bias, channel_fast, vmax);
  return plan_gather(g, channel_fast, vmax, s.mult, x.get_device(), stats);
}

}  // namespace

// ---- ops (declared in cuda/host_ops.h) -----------------------------------------------------------

namespace cuda {

using namespace host;

void depthwise_conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                          const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkern depthwise_conv2d_fwd";
  run_fwd(op, kDepthwise, parse_args(op, stride, padding, dilation), x, w, bias, out,
          [&](auto tag, const DwShape& s, bool has_bias, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    launch_gather<T>(fwd_plan<T>(x, w, bias, out, s, has_bias, false), stream);
  });
}

void depthwise_conv2d_fwd_act(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                              const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                              const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t activation) {
  constexpr const char* op = "cnnkern depthwise_conv2d_fwd_act";
  check_activation(op, activation);
  if (out.dim() == 4 && w.dim() == 4) {
    check_vector(op, "scale", scale, w.size(0), x, true);
    check_vector(op, "shift", shift, w.size(0), x, true);
    check_output(op, "out", out, {present(scale) ? *scale : at::Tensor(), present(shift) ? *shift : at::Tensor()});
  }
  run_fwd(op, kDepthwise, parse_args(op, stride, padding, dilation), x, w, bias, out,
          [&](auto tag, const DwShape& s, bool has_bias, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    DwGatherPlan<T> plan = fwd_plan<T>(x, w, bias, out, s, has_bias, false);
    plan.set_epilogue(channel_affine(scale, shift, activation), StatsOut{});
    if (plan.tiled) {
      launch_dw_tiled_act<T>(plan.tp, stream);
    } else if (plan.column) {
      launch_dw_column_act<T>(plan.cp, plan.v, stream);
    } else {
      launch_dw_direct_act<T>(plan.dp, plan.v, plan.mi, plan.win, stream);
    }
  });
  if (empty_reduction(x, w, out)) empty_reduction_act(out, scale, shift, activation);
}

int64_t depthwise_conv2d_fwd_stats_tiles(const at::Tensor& x, const at::Tensor& w, const at::Tensor& out,
                                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkern depthwise_conv2d_fwd_stats_tiles";
  check_tensor(op, "x", x, "x", x);
  check_tensor(op, "weight", w, "x", x);
  check_tensor(op, "out", out, "x", x);
  check_dtype_and_device(op, x);
  if (out.numel() == 0) return out.size(0) * out.size(2) * out.size(3) == 0 ? 0 : 1;
  if (empty_reduction(x, w, out)) return 1;
  const DwShape s = make_shape(op, x, w, out, "x", "weight", "out", parse_args(op, stride, padding, dilation));
  int64_t tiles = 0;
  dispatch(kDepthwise.name, x.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    tiles = fwd_plan<T>(x, w, std::nullopt, out, s, false, true).stats_tiles();
  });
  return tiles;
}

void depthwise_conv2d_fwd_stats(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                                const at::Tensor& out, const at::Tensor& partials, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkern depthwise_conv2d_fwd_stats";
  const int64_t tiles = depthwise_conv2d_fwd_stats_tiles(x, w, out, stride, padding, dilation);
  check_partials(op, partials, tiles, w.size(0), x, out);
  run_fwd(op, kDepthwise, parse_args(op, stride, padding, dilation), x, w, bias, out,
          [&](auto tag, const DwShape& s, bool has_bias, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    DwGatherPlan<T> plan = fwd_plan<T>(x, w, bias, out, s, has_bias, true);
    plan.set_epilogue(ChannelAffine{}, StatsOut{partials.mutable_data_ptr<float>(), s.c_out});
    if (plan.tiled) {
      launch_dw_tiled_stats<T>(plan.tp, stream);
    } else {
      launch_dw_direct_stats<T>(plan.dp, plan.v, plan.mi, plan.win, stream);
    }
  });
  if (empty_reduction(x, w, out)) empty_reduction_stats(partials, out, bias);
}

void depthwise_conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkern depthwise_conv2d_bwd_input";
  run_dgrad(op, kDepthwise, parse_args(op, stride, padding, dilation), grad_out, w, grad_in,
            [&](auto tag, const DwShape& s, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    const bool channel_fast = channels_fast(grad_out);
    // Each input channel sums m output channels: vectors only without a multiplier.
    const int vmax = channel_fast && s.mult == 1 ? dw_vec_width<T>(static_cast<int>(s.c), 1, [&](int v) {
      return vec_ok(grad_out, v) && vec_ok(grad_in, v);
    }) : 1;
    const DwGather<T> g = dw_dgrad_gather<T>(s, in_ptr<T>(grad_out), strides_of(grad_out), in_ptr<T>(w),
                                             strides_of(w), out_ptr<T>(grad_in), strides_of(grad_in));
    run_gather<T>(g, channel_fast, vmax, 1, grad_out.get_device(), stream);
  });
}

void depthwise_conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 bool deterministic) {
  constexpr const char* op = "cnnkern depthwise_conv2d_bwd_weight";
  run_wgrad(op, kDepthwise, parse_args(op, stride, padding, dilation), grad_out, x, grad_w,
            [&](auto tag, const DwShape& s, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    const bool channel_fast = channels_fast(x);
    const int vw = channel_fast && s.mult == 1 && s.c_out % 4 == 0 && vec_ok(x, 4) && vec_ok(grad_out, 4) ? 4 : 1;
    const int kt = s.kh == s.kw && (s.kh == 3 || s.kh == 5 || s.kh == 7) ? s.kh : 0;
    DwWgradParams<T> p = dw_plan_wgrad<T>(s, vw, channel_fast, kt, deterministic);
    const int64_t taps = int64_t{s.kh} * s.kw;
    at::Tensor ws;
    if (deterministic) {
      ws = at::empty({p.splits, s.c_out, taps}, x.options().dtype(at::kFloat));  // every element written
    } else {
      ws = at::empty({s.c_out, taps}, x.options().dtype(at::kFloat));
      ws.zero_();
    }
    p.dy = in_ptr<T>(grad_out);
    p.dys = strides_of(grad_out);
    p.x = in_ptr<T>(x);
    p.xs = strides_of(x);
    p.ws = ws.mutable_data_ptr<float>();
    const DwWgradFinalizeParams<T> f{p.ws, deterministic ? p.splits : 1, s.c_out, s.kh, s.kw, out_ptr<T>(grad_w),
                                     strides_of(grad_w)};
    launch_dw_wgrad<T>(p, vw, kt, f, stream);
  });
}

}  // namespace cuda

// The out-variant ops: outputs preallocated by the caller (any strides), padding (top, left).
TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "depthwise_conv2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, int[2] stride, int[2] padding, "
      "int[2] dilation) -> ()");
  // Fused conv + BatchNorm epilogues (kernel contract: cnnkern/problem/conv_bn.py). activation: 0 none,
  // 1 relu, 2 relu6, 3 silu. partials: fp32 (tiles, C_out, 3), tiles from depthwise_conv2d_fwd_stats_tiles
  // (it depends on the layouts, as the kernel does).
  m.def(
      "depthwise_conv2d_fwd_act(Tensor x, Tensor w, Tensor? bias, Tensor? scale, Tensor? shift, Tensor(a!) out, "
      "int[2] stride, int[2] padding, int[2] dilation, int activation) -> ()");
  m.def(
      "depthwise_conv2d_fwd_stats(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, Tensor(b!) partials, "
      "int[2] stride, int[2] padding, int[2] dilation) -> ()");
  m.def(
      "depthwise_conv2d_fwd_stats_tiles(Tensor x, Tensor w, Tensor out, int[2] stride, int[2] padding, "
      "int[2] dilation) -> int");
  m.def(
      "depthwise_conv2d_bwd_input(Tensor grad_out, Tensor w, Tensor(a!) grad_in, int[2] stride, int[2] padding, "
      "int[2] dilation) -> ()");
  m.def(
      "depthwise_conv2d_bwd_weight(Tensor grad_out, Tensor x, Tensor(a!) grad_w, int[2] stride, int[2] padding, "
      "int[2] dilation, bool deterministic) -> ()");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("depthwise_conv2d_fwd", &cuda::depthwise_conv2d_fwd);
  m.impl("depthwise_conv2d_fwd_act", &cuda::depthwise_conv2d_fwd_act);
  m.impl("depthwise_conv2d_fwd_stats", &cuda::depthwise_conv2d_fwd_stats);
  m.impl("depthwise_conv2d_fwd_stats_tiles", &cuda::depthwise_conv2d_fwd_stats_tiles);
  m.impl("depthwise_conv2d_bwd_input", &cuda::depthwise_conv2d_bwd_input);
  m.impl("depthwise_conv2d_bwd_weight", &cuda::depthwise_conv2d_bwd_weight);
}

}  // namespace cnnkern
