// Host side of cnnkern_cuda::conv2d_{fwd,bwd_input,bwd_weight}: argument checks (a defence behind the
// Python-side validation), dtype dispatch, choice of gather mapping / split-K, launches on the current
// stream. Outputs are preallocated by the caller with any strides; nothing big is made contiguous.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/flip.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "common/gemm_tile.cuh"
#include "cuda/conv2d_dgrad_as_fwd.h"
#include "cuda/conv2d_dgrad_sm90.h"
#include "cuda/conv2d_launch.h"
#include "cuda/conv2d_sm90.h"
#include "cuda/host_common.h"
#include "cuda/host_epilogue.h"
#include "cuda/host_ops.h"

namespace cnnkern {
namespace {

using namespace host;

// GEMM indices are int32 in the kernels (with up to a tile of overshoot).
constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - 4096;
constexpr int64_t kGridYZLimit = 65535;

// Checks channel/group/shape consistency between activation (n, c_in, h, w), weight and the other
// activation (n, c_out, oh, ow), and builds the kernel shape.
Conv2dShape make_shape(const char* op, const at::Tensor& x_like, const at::Tensor& w_like, const at::Tensor& y_like,
                       const char* x_name, const char* w_name, const char* y_name, const ConvArgs& a) {
  const int64_t n = x_like.size(0), c_in = x_like.size(1), h = x_like.size(2), w = x_like.size(3);
  const int64_t c_out = w_like.size(0), cg_in = w_like.size(1), kh = w_like.size(2), kw = w_like.size(3);
  const int64_t g = a.groups;
  TORCH_CHECK(c_in % g == 0, op, ": ", x_name, " has ", c_in, " channels, not divisible by groups=", g);
  TORCH_CHECK(c_out % g == 0, op, ": ", w_name, " has ", c_out, " output channels, not divisible by groups=", g);
  TORCH_CHECK(cg_in * g == c_in, op, ": ", w_name, " shape ", w_like.sizes(), " expects ", cg_in * g,
              " input channels (", cg_in, " per group x groups=", g, ") but ", x_name, " shape ", x_like.sizes(),
              " has ", c_in);
  check_out_shape(op, x_like, w_like, y_like, x_name, w_name, y_name, a);
  const int64_t oh = y_like.size(2), ow = y_like.size(3);

  const int64_t cg_out = c_out / g;
  TORCH_CHECK(n * oh * ow <= kIndexLimit && n * h * w <= kIndexLimit, op, ": N*H*W = ", n * h * w,
              " / N*OH*OW = ", n * oh * ow, " exceed the 32-bit pixel index limit; split the batch");
  TORCH_CHECK(c_in <= kIndexLimit && c_out <= kIndexLimit && kh * kw * std::max(cg_in, cg_out) <= kIndexLimit &&
                  c_out * kh * kw * cg_in <= kIndexLimit,
              op,
              ": filter too large for 32-bit indexing, weight shape ", w_like.sizes());
  TORCH_CHECK(g <= kGridYZLimit, op, ": groups=", g, " exceeds the grid limit ", kGridYZLimit);
  TORCH_CHECK((std::max(cg_in, cg_out) * kh * kw + 63) / 64 <= kGridYZLimit, op, ": too many channels per group");

  auto i = [](int64_t v) { return static_cast<int>(v); };
  return Conv2dShape{i(n),      i(c_in),     i(h),        i(w),        i(c_out),    i(oh),
                     i(ow),     i(kh),       i(kw),       i(g),        i(cg_in),    i(cg_out),
                     i(a.stride[0]), i(a.stride[1]), i(a.pad[0]), i(a.pad[1]), i(a.dil[0]), i(a.dil[1])};
}

constexpr OpFamily<Conv2dShape> kConv2d{"cnnkern conv2d", &check_dtype_tensor_cores, &make_shape};

// The forward's gather mapping (pixels-fast, channels-fast, or 16-byte channel vectors) and its parameters.
// The weight is small: it is given the matching channels-last layout when x allows vectors and it lacks it
// (`wk` keeps that copy alive for the launch).
template <class T>
Conv2dFwdParams<T> fwd_params(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                              const at::Tensor& out, const Conv2dShape& s, bool has_bias, at::Tensor& wk,
                              GatherMap& map) {
  constexpr int64_t V = 16 / sizeof(T);
  wk = w;
  map = GatherMap::kPixelFast;
  if (channels_fast(x)) {
    map = GatherMap::kChannelFast;
    if (s.cg_in % V == 0 && vec_ok(x, V)) {
      if (!vec_ok(wk, V)) wk = w.contiguous(at::MemoryFormat::ChannelsLast);
      if (vec_ok(wk, V)) map = GatherMap::kChannelVec;
    }
  }
  return Conv2dFwdParams<T>{s,
                            in_ptr<T>(x),
                            strides_of(x),
                            in_ptr<T>(wk),
                            strides_of(wk),
                            has_bias ? in_ptr<T>(*bias) : nullptr,
                            has_bias ? bias->stride(0) : 0,
                            out_ptr<T>(out),
                            strides_of(out),
                            ChannelAffine{},
                            StatsOut{}};
}

static_assert(kDgradAsFwdCoordLimit == kCoordLimit, "conv2d_dgrad_as_fwd.h bounds coordinates as the host checks do");

// w'_phase of the dgrad-as-forward (conv2d_dgrad_as_fwd.h): the phase's taps of w (rows r0, r0 + rq, ...,
// columns alike; every tap for stride 1), flipped and transposed: w'[c][k][j][l] = w[k][c][r_{th-1-j}][s_{tw-1-l}],
// shape [C_in][C_out][th][tw], channels-last ([C_in][th][tw][C_out] in memory: one K = th*tw*C_out row per
// forward output channel, the layout the sm_90a gate and its weight TMA map want, so fwd_params makes no further
// copy). Cost: two copies of (that part of) the weight per phase, made on every call since the weight changes
// every step: 4.7 MB for ResNet-50's largest 3x3 (512x512x3x3 fp16), ~19 MB moved, a few us plus two launches
// (an estimate, unmeasured) next to a predicted ~120 us dgrad.
at::Tensor dgrad_phase_weight_as_fwd(const at::Tensor& w, const DgradPhase& p) {
  const at::Tensor taps = w.slice(2, p.y.r0, w.size(2), p.y.rq).slice(3, p.x.r0, w.size(3), p.x.rq);
  return at::flip(taps, {2, 3}).transpose(0, 1).contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace

template <class T>
bool dgrad_on_sm90_fwd(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                       const Conv2dShape& s, const std::optional<at::Tensor>& bias, cudaStream_t stream) {
  const int device = grad_out.get_device();
  // The gate first: by default (CNNKERN_SM90_WGMMA unset) one static bool, no plan built, nothing allocated.
  if (sm90_wgmma_gate(device) != nullptr) return false;
  const DgradPhasesAsFwd plan = dgrad_phases_as_fwd(s, sizeof(T));
  if (!plan.applies()) return false;
  const bool has_bias = host::present(bias);
  // Every phase is gated before any runs (all or nothing). The weights (w2, wk) stay alive until the launches
  // are queued; their memory returns to the caching allocator on this stream, so later work on it is ordered
  // after the kernels that read them.
  struct Launch {
    at::Tensor w2, wk, y;
    Conv2dFwdParams<T> p;
  };
  std::vector<Launch> launches;
  std::vector<at::Tensor> zeros;
  for (const DgradPhase& ph : plan.phases) {
    at::Tensor y = grad_in.slice(2, ph.ph, s.h, s.stride_h).slice(3, ph.pw, s.w, s.stride_w);
    if (ph.zero()) {
      zeros.push_back(y);
      continue;
    }
    Launch l;
    l.y = y;
    l.w2 = dgrad_phase_weight_as_fwd(w, ph);
    const at::Tensor x = grad_out.slice(2, ph.y.skip, s.oh).slice(3, ph.x.skip, s.ow);
    GatherMap map;
    l.p = fwd_params<T>(x, l.w2, bias, y, ph.fwd, has_bias, l.wk, map);
    if (conv2d_fwd_sm90_why_not<T>(l.p, map, EpiKind::kPlain, device) != nullptr) return false;
    launches.push_back(std::move(l));
  }
  for (const at::Tensor& y : zeros) host::fill_bias_or_zero(y, bias);
  for (const Launch& l : launches) {
    launch_conv2d_fwd_sm90<T>(l.p, EpiKind::kPlain, !host::channels_fast(l.y), device, stream);
  }
  return true;
}

template bool dgrad_on_sm90_fwd<float>(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Conv2dShape&,
                                       const std::optional<at::Tensor>&, cudaStream_t);
template bool dgrad_on_sm90_fwd<__half>(const at::Tensor&, const at::Tensor&, const at::Tensor&, const Conv2dShape&,
                                        const std::optional<at::Tensor>&, cudaStream_t);
template bool dgrad_on_sm90_fwd<__nv_bfloat16>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               const Conv2dShape&, const std::optional<at::Tensor>&, cudaStream_t);

namespace {

// The weight gradient on the sm_90a wgmma kernel where its gates hold (conv2d_wgrad_sm90_why_not): the split-K
// GEMM into an fp32 workspace of its own plan, then the same fixed-order reduction as the step-1 kernel.
template <class T>
bool wgrad_on_sm90(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w, const Conv2dShape& s,
                   cudaStream_t stream) {
  const int device = x.get_device();
  Conv2dWgradParams<T> p{s, in_ptr<T>(grad_out), strides_of(grad_out), in_ptr<T>(x), strides_of(x), nullptr, 0, 0,
                         out_ptr<T>(grad_w), strides_of(grad_w)};
  if (conv2d_wgrad_sm90_why_not<T>(p, device) != nullptr) return false;
  const SplitKPlan plan = conv2d_wgrad_sm90_plan(s);
  // Freed to the caching allocator on this stream after the launches are queued: later work is ordered after them.
  at::Tensor workspace =
      at::empty({plan.splits, s.c_out, int64_t{s.kh} * s.kw * s.cg_in}, x.options().dtype(at::kFloat));
  p.workspace = workspace.mutable_data_ptr<float>();
  p.splits = plan.splits;
  p.k_per_split = plan.k_per_split;
  launch_conv2d_wgrad_sm90<T>(p, device, stream);
  return true;
}

}  // namespace

static_assert(GemmTile<float>::kBM == GemmTile<__half>::kBM && GemmTile<float>::kBM == GemmTile<__nv_bfloat16>::kBM,
              "one pixel tile for every element type: the statistics tiles depend on the shape only");

int64_t conv2d_stats_tiles(int64_t pixels) { return (pixels + GemmTile<float>::kBM - 1) / GemmTile<float>::kBM; }

// ---- ops (declared in cuda/host_ops.h) -----------------------------------------------------------

namespace cuda {

using namespace host;

void conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                int64_t groups) {
  constexpr const char* op = "cnnkern conv2d_fwd";
  run_fwd(op, kConv2d, parse_args(op, stride, padding, dilation, groups), x, w, bias, out,
          [&](auto tag, const Conv2dShape& s, bool has_bias, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    at::Tensor wk;
    GatherMap map;
    const Conv2dFwdParams<T> p = fwd_params<T>(x, w, bias, out, s, has_bias, wk, map);
    if (conv2d_fwd_sm90_why_not<T>(p, map, EpiKind::kPlain, x.get_device()) == nullptr) {
      launch_conv2d_fwd_sm90<T>(p, EpiKind::kPlain, !channels_fast(out), x.get_device(), stream);
      return;
    }
    launch_conv2d_fwd<T>(p, map, !channels_fast(out), stream);
  });
}

void conv2d_fwd_act(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                    const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                    const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                    int64_t groups, int64_t activation) {
  constexpr const char* op = "cnnkern conv2d_fwd_act";
  check_activation(op, activation);
  if (out.dim() == 4 && w.dim() == 4) {
    check_vector(op, "scale", scale, w.size(0), x, true);
    check_vector(op, "shift", shift, w.size(0), x, true);
    check_output(op, "out", out,
                 {present(scale) ? *scale : at::Tensor(), present(shift) ? *shift : at::Tensor()});
  }
  run_fwd(op, kConv2d, parse_args(op, stride, padding, dilation, groups), x, w, bias, out,
          [&](auto tag, const Conv2dShape& s, bool has_bias, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    at::Tensor wk;
    GatherMap map;
    Conv2dFwdParams<T> p = fwd_params<T>(x, w, bias, out, s, has_bias, wk, map);
    p.aff = channel_affine(scale, shift, activation);
    if (conv2d_fwd_sm90_why_not<T>(p, map, EpiKind::kAct, x.get_device()) == nullptr) {
      launch_conv2d_fwd_sm90<T>(p, EpiKind::kAct, !channels_fast(out), x.get_device(), stream);
      return;
    }
    launch_conv2d_fwd_act<T>(p, map, !channels_fast(out), stream);
  });
  if (empty_reduction(x, w, out)) empty_reduction_act(out, scale, shift, activation);
}

int64_t conv2d_fwd_stats_tiles(const at::Tensor& x, const at::Tensor& w, const at::Tensor& out) {
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && out.dim() == 4,
              "cnnkern conv2d_fwd_stats_tiles: x, weight and out must be 4-D");
  if (empty_reduction(x, w, out)) return 1;
  return conv2d_stats_tiles(out.size(0) * out.size(2) * out.size(3));
}

void conv2d_fwd_stats(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                      const at::Tensor& out, const at::Tensor& partials, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  constexpr const char* op = "cnnkern conv2d_fwd_stats";
  if (x.dim() == 4 && w.dim() == 4 && out.dim() == 4) {
    check_partials(op, partials, conv2d_fwd_stats_tiles(x, w, out), w.size(0), x, out);
  }
  run_fwd(op, kConv2d, parse_args(op, stride, padding, dilation, groups), x, w, bias, out,
          [&](auto tag, const Conv2dShape& s, bool has_bias, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    at::Tensor wk;
    GatherMap map;
    Conv2dFwdParams<T> p = fwd_params<T>(x, w, bias, out, s, has_bias, wk, map);
    p.stats = StatsOut{partials.mutable_data_ptr<float>(), s.c_out};
    // The sm_90a kernel's statistics tiles are the step-1 kernel's (128 output pixels each).
    if (conv2d_fwd_sm90_why_not<T>(p, map, EpiKind::kStats, x.get_device()) == nullptr) {
      launch_conv2d_fwd_sm90<T>(p, EpiKind::kStats, !channels_fast(out), x.get_device(), stream);
      return;
    }
    launch_conv2d_fwd_stats<T>(p, map, !channels_fast(out), stream);
  });
  if (empty_reduction(x, w, out)) empty_reduction_stats(partials, out, bias);
}

void conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  constexpr const char* op = "cnnkern conv2d_bwd_input";
  run_dgrad(op, kConv2d, parse_args(op, stride, padding, dilation, groups), grad_out, w, grad_in,
            [&](auto tag, const Conv2dShape& s, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    if (dgrad_on_sm90_fwd<T>(grad_out, w, grad_in, s, std::nullopt, stream)) return;
    constexpr int64_t V = 16 / sizeof(T);
    // One block row per (group, stride phase) of grad_in.
    TORCH_CHECK(int64_t{s.groups} * s.stride_h * s.stride_w <= kGridYZLimit, op, ": groups=", s.groups,
                " times the stride phases ", s.stride_h, "x", s.stride_w, " exceeds the grid limit ", kGridYZLimit);
    GatherMap map = GatherMap::kPixelFast;
    if (channels_fast(grad_out)) {
      map = (s.cg_out % V == 0 && vec_ok(grad_out, V)) ? GatherMap::kChannelVec : GatherMap::kChannelFast;
    }
    const Conv2dDgradParams<T> p{s,
                                 in_ptr<T>(grad_out),
                                 strides_of(grad_out),
                                 in_ptr<T>(w),
                                 strides_of(w),
                                 out_ptr<T>(grad_in),
                                 strides_of(grad_in),
                                 nullptr,
                                 0};
    launch_conv2d_dgrad<T>(p, map, !channels_fast(grad_in), stream);
  });
}

void conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  constexpr const char* op = "cnnkern conv2d_bwd_weight";
  run_wgrad(op, kConv2d, parse_args(op, stride, padding, dilation, groups), grad_out, x, grad_w,
            [&](auto tag, const Conv2dShape& s, cudaStream_t stream) {
    using T = typename decltype(tag)::type;
    if (wgrad_on_sm90<T>(grad_out, x, grad_w, s, stream)) return;
    using Tile = GemmTile<T>;
    const int64_t cols = int64_t{s.kh} * s.kw * s.cg_in;
    const SplitKPlan plan =
        wgrad_split_plan(s.cg_out, cols, int64_t{s.n} * s.oh * s.ow, s.groups, Tile::kBM, Tile::kBN, Tile::kBK);
    at::Tensor workspace = at::empty({plan.splits, s.c_out, cols}, x.options().dtype(at::kFloat));
    const Conv2dWgradParams<T> p{s,
                                 in_ptr<T>(grad_out),
                                 strides_of(grad_out),
                                 in_ptr<T>(x),
                                 strides_of(x),
                                 workspace.mutable_data_ptr<float>(),
                                 plan.splits,
                                 plan.k_per_split,
                                 out_ptr<T>(grad_w),
                                 strides_of(grad_w)};
    launch_conv2d_wgrad<T>(p, channels_fast(x), stream);
  });
}

}  // namespace cuda

// The out-variant ops: outputs preallocated by the caller (any strides), padding (top, left).
TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "conv2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
  // Fused conv + BatchNorm epilogues (kernel contract: cnnkern/problem/conv_bn.py). activation: 0 none,
  // 1 relu, 2 relu6, 3 silu. partials: fp32 (tiles, C_out, 3), tiles = conv2d_fwd_stats_tiles(x, w, out).
  m.def(
      "conv2d_fwd_act(Tensor x, Tensor w, Tensor? bias, Tensor? scale, Tensor? shift, Tensor(a!) out, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, int activation) -> ()");
  m.def(
      "conv2d_fwd_stats(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, Tensor(b!) partials, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups) -> ()");
  m.def("conv2d_fwd_stats_tiles(Tensor x, Tensor w, Tensor out) -> int");
  m.def(
      "conv2d_bwd_input(Tensor grad_out, Tensor w, Tensor(a!) grad_in, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
  m.def(
      "conv2d_bwd_weight(Tensor grad_out, Tensor x, Tensor(a!) grad_w, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("conv2d_fwd", &cuda::conv2d_fwd);
  m.impl("conv2d_fwd_act", &cuda::conv2d_fwd_act);
  m.impl("conv2d_fwd_stats", &cuda::conv2d_fwd_stats);
  m.impl("conv2d_fwd_stats_tiles", &cuda::conv2d_fwd_stats_tiles);
  m.impl("conv2d_bwd_input", &cuda::conv2d_bwd_input);
  m.impl("conv2d_bwd_weight", &cuda::conv2d_bwd_weight);
}

}  // namespace cnnkern
