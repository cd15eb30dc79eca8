// Host side of cnnkern_cuda::conv2d_{fwd,bwd_input,bwd_weight}: argument checks (a defence behind the
// Python-side validation), dtype dispatch, choice of gather mapping / split-K, launches on the current
// stream. Outputs are preallocated by the caller with any strides; nothing big is made contiguous.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "common/gemm_tile.cuh"
#include "cuda/conv2d_launch.h"

namespace cnnkern {
namespace {

// GEMM indices are int32 in the kernels (with up to a tile of overshoot); coordinates including
// padding and dilation must stay far from overflow.
constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - 4096;
constexpr int64_t kCoordLimit = int64_t{1} << 30;
constexpr int64_t kGridYZLimit = 65535;

struct ConvArgs {
  int64_t stride[2];
  int64_t pad[2];
  int64_t dil[2];
  int64_t groups;
};

ConvArgs parse_args(const char* op, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                    int64_t groups) {
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": stride, padding and dilation must have 2 elements each, got stride=", stride,
              " padding=", padding, " dilation=", dilation);
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, op, ": stride must be positive, got ", stride);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, op, ": dilation must be positive, got ", dilation);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, op, ": padding must be non-negative, got ", padding);
  TORCH_CHECK(groups > 0, op, ": groups must be positive, got ", groups);
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(stride[i] < kCoordLimit && padding[i] < kCoordLimit && dilation[i] < kCoordLimit, op,
                ": stride/padding/dilation too large for 32-bit coordinates");
  }
  return ConvArgs{{stride[0], stride[1]}, {padding[0], padding[1]}, {dilation[0], dilation[1]}, groups};
}

void check_tensor(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                  const at::Tensor& ref) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-D, got shape ", t.sizes());
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a strided (dense) tensor");
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got device ", t.device());
  TORCH_CHECK(t.device() == ref.device(), op, ": all tensors must be on the same device; ", name, " is on ",
              t.device(), " but ", ref_name, " is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": all tensors must have the same dtype; ", name, " is ",
              t.scalar_type(), " but ", ref_name, " is ", ref.scalar_type());
}

void check_dtype_and_device(const char* op, const at::Tensor& t) {
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, op,
              ": supported dtypes are float32, float16 and bfloat16, got ", st);
  if (st != at::kFloat) {
    // (ATen/cuda/CUDAContext.h would pull in cuSPARSE/cuBLAS headers; a plain attribute query suffices.)
    int major = 0, minor = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, t.get_device()));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, t.get_device()));
    TORCH_CHECK(major >= 8, op, ": ", st, " kernels use tensor cores and need compute capability >= 8.0; ",
                t.device(), " is sm_", major, minor);
  }
}

void check_output(const char* op, const char* name, const at::Tensor& out, std::initializer_list<at::Tensor> inputs) {
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, op, ": ", name,
              " has internal overlap (e.g. an expanded tensor); every output element must have its own memory");
  for (const at::Tensor& in : inputs) {
    if (in.defined()) at::assert_no_overlap(out, in);
  }
}

// Output extent for top/left padding `pad` and bottom/right padding `pad_hi`; -1 if the dilated
// kernel does not fit.
int64_t out_extent(int64_t in, int64_t pad, int64_t pad_hi, int64_t k, int64_t stride, int64_t dil) {
  const int64_t span = in + pad + pad_hi - dil * (k - 1) - 1;
  return span < 0 ? -1 : span / stride + 1;
}

// Bottom/right padding is implied by the shapes (any amount >= 0, e.g. asymmetric 'same' or explicit
// 4-sided padding), so the output extent must be at least the one with zero bottom/right padding.
void check_geometry(const char* op, const char* what, int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad,
                    int64_t dil) {
  const int64_t least = std::max<int64_t>(1, out_extent(in, pad, 0, k, stride, dil));
  TORCH_CHECK(out >= least, op, ": output ", what, " ", out, " is impossible for input ", what, " ", in,
              " with kernel ", k, ", stride ", stride, ", top/left padding ", pad, ", dilation ", dil,
              " (at least ", least, "; symmetric padding gives ", out_extent(in, pad, pad, k, stride, dil), ")");
  TORCH_CHECK(in + pad + 1 + dil * (k - 1) < kCoordLimit && (out + 1) * stride + pad < kCoordLimit, op, ": ", what,
              " extents too large for 32-bit coordinates");
}

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
  TORCH_CHECK(kh > 0 && kw > 0, op, ": kernel size must be positive, got ", w_name, " shape ", w_like.sizes());
  TORCH_CHECK(y_like.size(0) == n && y_like.size(1) == c_out, op, ": ", y_name, " shape ", y_like.sizes(),
              " must be (N=", n, ", C_out=", c_out, ", OH, OW) for ", x_name, " shape ", x_like.sizes(), " and ",
              w_name, " shape ", w_like.sizes());
  const int64_t oh = y_like.size(2), ow = y_like.size(3);
  check_geometry(op, "height", h, oh, kh, a.stride[0], a.pad[0], a.dil[0]);
  check_geometry(op, "width", w, ow, kw, a.stride[1], a.pad[1], a.dil[1]);

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

Strides4 strides_of(const at::Tensor& t) { return Strides4{t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// Element distance between consecutive pixels (w, then h, then n when the inner extents are 1).
int64_t pixel_step(const at::Tensor& t) {
  return t.size(3) > 1 ? t.stride(3) : (t.size(2) > 1 ? t.stride(2) : t.stride(0));
}
bool channels_fast(const at::Tensor& t) { return t.size(1) > 1 && t.stride(1) < pixel_step(t); }

// 16-byte vector loads along channels: unit channel stride, every other stride that can be
// non-zero-multiplied a multiple of the vector width, and an aligned base pointer.
bool vec_ok(const at::Tensor& t, int64_t v) {
  if (t.stride(1) != 1) return false;
  for (int d : {0, 2, 3}) {
    if (t.size(d) > 1 && t.stride(d) % v != 0) return false;
  }
  return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0;
}

template <class T>
struct Tag {
  using type = T;
};

template <class F>
void dispatch(at::ScalarType st, F&& f) {
  switch (st) {
    case at::kFloat:
      f(Tag<float>{});
      break;
    case at::kHalf:
      f(Tag<__half>{});
      break;
    case at::kBFloat16:
      f(Tag<__nv_bfloat16>{});
      break;
    default:
      TORCH_CHECK(false, "cnnkern conv2d: unsupported dtype ", st);
  }
}

template <class T>
const T* in_ptr(const at::Tensor& t) {
  return static_cast<const T*>(t.const_data_ptr());
}
template <class T>
T* out_ptr(const at::Tensor& t) {
  return static_cast<T*>(t.mutable_data_ptr());
}

// ---- ops -------------------------------------------------------------------------------------------

void conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                int64_t groups) {
  constexpr const char* op = "cnnkern conv2d_fwd";
  const ConvArgs a = parse_args(op, stride, padding, dilation, groups);
  check_tensor(op, "x", x, "x", x);
  check_tensor(op, "weight", w, "x", x);
  check_tensor(op, "out", out, "x", x);
  check_dtype_and_device(op, x);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == w.size(0), op, ": bias must have shape (C_out=", w.size(0),
                "), got ", bias->sizes());
    TORCH_CHECK(bias->device() == x.device() && bias->scalar_type() == x.scalar_type(), op,
                ": bias must match x in device and dtype; bias is ", bias->scalar_type(), " on ", bias->device(),
                ", x is ", x.scalar_type(), " on ", x.device());
  }
  const Conv2dShape s = make_shape(op, x, w, out, "x", "weight", "out", a);
  check_output(op, "out", out, {x, w, has_bias ? *bias : at::Tensor()});

  c10::cuda::CUDAGuard guard(x.device());
  if (out.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) {  // empty reduction: out = bias (or 0)
    if (has_bias) {
      out.copy_(bias->view({1, -1, 1, 1}).expand_as(out));
    } else {
      out.zero_();
    }
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(x.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int64_t V = 16 / sizeof(T);
    at::Tensor wk = w;
    GatherMap map = GatherMap::kPixelFast;
    if (channels_fast(x)) {
      map = GatherMap::kChannelFast;
      if (s.cg_in % V == 0 && vec_ok(x, V)) {
        // The weight is small: give it the matching channels-last layout if it lacks it.
        if (!vec_ok(wk, V)) wk = w.contiguous(at::MemoryFormat::ChannelsLast);
        if (vec_ok(wk, V)) map = GatherMap::kChannelVec;
      }
    }
    const Conv2dFwdParams<T> p{s,
                               in_ptr<T>(x),
                               strides_of(x),
                               in_ptr<T>(wk),
                               strides_of(wk),
                               has_bias ? in_ptr<T>(*bias) : nullptr,
                               has_bias ? bias->stride(0) : 0,
                               out_ptr<T>(out),
                               strides_of(out)};
    launch_conv2d_fwd<T>(p, map, !channels_fast(out), stream);
  });
}

void conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  constexpr const char* op = "cnnkern conv2d_bwd_input";
  const ConvArgs a = parse_args(op, stride, padding, dilation, groups);
  check_tensor(op, "grad_out", grad_out, "grad_out", grad_out);
  check_tensor(op, "weight", w, "grad_out", grad_out);
  check_tensor(op, "grad_in", grad_in, "grad_out", grad_out);
  check_dtype_and_device(op, grad_out);
  const Conv2dShape s = make_shape(op, grad_in, w, grad_out, "grad_in", "weight", "grad_out", a);
  check_output(op, "grad_in", grad_in, {grad_out, w});

  c10::cuda::CUDAGuard guard(grad_out.device());
  if (grad_in.numel() == 0) return;
  if (grad_out.numel() == 0 || w.numel() == 0) {  // nothing reaches the input
    grad_in.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(grad_out.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int64_t V = 16 / sizeof(T);
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
                                 strides_of(grad_in)};
    launch_conv2d_dgrad<T>(p, map, !channels_fast(grad_in), stream);
  });
}

// Split-K plan for the weight gradient. The K extent (N*OH*OW) is usually far larger than the output
// (C_out x KH*KW*Cg_in), so K is cut into `splits` contiguous, tile-aligned ranges until there are
// enough blocks to fill the GPU. The target is a constant rather than the SM count so that results
// are bitwise identical across GPUs, not only across runs.
struct SplitPlan {
  int splits;
  int k_per_split;
};

SplitPlan plan_wgrad_splits(const Conv2dShape& s, int bm, int bn, int bk) {
  constexpr int64_t kTargetBlocks = 1024;
  constexpr int64_t kMinKTilesPerSplit = 4;
  constexpr int64_t kMaxSplits = 256;
  constexpr int64_t kMaxWorkspaceBytes = int64_t{512} << 20;
  const int64_t rows = s.cg_out, cols = int64_t{s.kh} * s.kw * s.cg_in;
  const int64_t k = int64_t{s.n} * s.oh * s.ow;
  const int64_t tiles_mn = ((rows + bm - 1) / bm) * ((cols + bn - 1) / bn) * s.groups;
  const int64_t k_tiles = (k + bk - 1) / bk;
  int64_t splits = (kTargetBlocks + tiles_mn - 1) / tiles_mn;
  splits = std::min(splits, (k_tiles + kMinKTilesPerSplit - 1) / kMinKTilesPerSplit);
  splits = std::min(splits, kMaxSplits);
  splits = std::min(splits, kGridYZLimit / s.groups);
  splits = std::min(splits, kMaxWorkspaceBytes / std::max<int64_t>(1, 4 * int64_t{s.c_out} * cols));
  splits = std::max<int64_t>(splits, 1);
  const int64_t tiles_per_split = (k_tiles + splits - 1) / splits;
  splits = (k_tiles + tiles_per_split - 1) / tiles_per_split;  // no empty splits
  return SplitPlan{static_cast<int>(splits), static_cast<int>(tiles_per_split * bk)};
}

void conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  constexpr const char* op = "cnnkern conv2d_bwd_weight";
  const ConvArgs a = parse_args(op, stride, padding, dilation, groups);
  check_tensor(op, "grad_out", grad_out, "x", x);
  check_tensor(op, "x", x, "x", x);
  check_tensor(op, "grad_weight", grad_w, "x", x);
  check_dtype_and_device(op, x);
  const Conv2dShape s = make_shape(op, x, grad_w, grad_out, "x", "grad_weight", "grad_out", a);
  check_output(op, "grad_weight", grad_w, {grad_out, x});

  c10::cuda::CUDAGuard guard(x.device());
  if (grad_w.numel() == 0) return;
  if (grad_out.numel() == 0 || x.numel() == 0) {  // empty reduction
    grad_w.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(x.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tile = GemmTile<T>;
    const SplitPlan plan = plan_wgrad_splits(s, Tile::kBM, Tile::kBN, Tile::kBK);
    const int64_t cols = int64_t{s.kh} * s.kw * s.cg_in;
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

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("conv2d_fwd", &conv2d_fwd);
  m.impl("conv2d_bwd_input", &conv2d_bwd_input);
  m.impl("conv2d_bwd_weight", &conv2d_bwd_weight);
}

}  // namespace cnnkern
