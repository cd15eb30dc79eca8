// Host side of cnnkern_cuda::depthwise_conv2d_{fwd,bwd_input,bwd_weight} (groups == C_in, weight
// (C_in*m, 1, KH, KW)): argument checks (a defence behind the Python-side validation), dtype dispatch,
// choice of kernel per layout, launches on the current stream. Every tensor is addressed through its
// strides; outputs are preallocated by the caller and nothing is made contiguous.
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

#include "cuda/depthwise_conv2d_launch.h"

namespace cnnkern {
namespace {

// Pixel indices (n, y, x) and plane indices (n, c) are int32 in the kernels, with some overshoot.
constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - 65536;
constexpr int64_t kCoordLimit = int64_t{1} << 30;

struct DwArgs {
  int64_t stride[2];
  int64_t pad[2];
  int64_t dil[2];
};

DwArgs parse_args(const char* op, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": stride, padding and dilation must have 2 elements each, got stride=", stride,
              " padding=", padding, " dilation=", dilation);
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, op, ": stride must be positive, got ", stride);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, op, ": dilation must be positive, got ", dilation);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, op, ": padding must be non-negative, got ", padding);
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(stride[i] < kCoordLimit && padding[i] < kCoordLimit && dilation[i] < kCoordLimit, op,
                ": stride/padding/dilation too large for 32-bit coordinates");
  }
  return DwArgs{{stride[0], stride[1]}, {padding[0], padding[1]}, {dilation[0], dilation[1]}};
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
  // (ATen/cuda/CUDAContext.h would pull in cuSPARSE/cuBLAS headers; a plain attribute query suffices.)
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, t.get_device()));
  TORCH_CHECK(major >= 8, op, ": the depthwise kernels need compute capability >= 8.0; ", t.device(), " is sm_",
              major, "x");
}

void check_output(const char* op, const char* name, const at::Tensor& out, std::initializer_list<at::Tensor> inputs) {
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, op, ": ", name,
              " has internal overlap (e.g. an expanded tensor); every output element must have its own memory");
  for (const at::Tensor& in : inputs) {
    if (in.defined()) at::assert_no_overlap(out, in);
  }
}

int64_t out_extent(int64_t in, int64_t pad, int64_t pad_hi, int64_t k, int64_t stride, int64_t dil) {
  const int64_t span = in + pad + pad_hi - dil * (k - 1) - 1;
  return span < 0 ? -1 : span / stride + 1;
}

// Bottom/right padding is implied by the shapes (any amount >= 0), so the output extent must be at
// least the one with zero bottom/right padding.
void check_geometry(const char* op, const char* what, int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad,
                    int64_t dil) {
  const int64_t least = std::max<int64_t>(1, out_extent(in, pad, 0, k, stride, dil));
  TORCH_CHECK(out >= least, op, ": output ", what, " ", out, " is impossible for input ", what, " ", in,
              " with kernel ", k, ", stride ", stride, ", top/left padding ", pad, ", dilation ", dil,
              " (at least ", least, "; symmetric padding gives ", out_extent(in, pad, pad, k, stride, dil), ")");
  TORCH_CHECK(in + pad + 1 + dil * (k - 1) < kCoordLimit && (out + 1) * stride + pad < kCoordLimit, op, ": ", what,
              " extents too large for 32-bit coordinates");
}

// x_like (N, C, H, W), w_like (C*m, 1, KH, KW), y_like (N, C*m, OH, OW).
DwShape make_shape(const char* op, const at::Tensor& x_like, const at::Tensor& w_like, const at::Tensor& y_like,
                   const char* x_name, const char* w_name, const char* y_name, const DwArgs& a) {
  const int64_t n = x_like.size(0), c = x_like.size(1), h = x_like.size(2), w = x_like.size(3);
  const int64_t c_out = w_like.size(0), kh = w_like.size(2), kw = w_like.size(3);
  TORCH_CHECK(w_like.size(1) == 1, op, ": depthwise ", w_name, " must have shape (C*multiplier, 1, KH, KW), got ",
              w_like.sizes());
  TORCH_CHECK(c > 0 ? (c_out >= c && c_out % c == 0) : c_out == 0, op, ": ", w_name, " shape ", w_like.sizes(),
              " has ", c_out, " output channels, which must be a positive multiple of the ", c, " channels of ",
              x_name, " shape ", x_like.sizes());
  TORCH_CHECK(kh > 0 && kw > 0, op, ": kernel size must be positive, got ", w_name, " shape ", w_like.sizes());
  TORCH_CHECK(y_like.size(0) == n && y_like.size(1) == c_out, op, ": ", y_name, " shape ", y_like.sizes(),
              " must be (N=", n, ", C_out=", c_out, ", OH, OW) for ", x_name, " shape ", x_like.sizes(), " and ",
              w_name, " shape ", w_like.sizes());
  const int64_t oh = y_like.size(2), ow = y_like.size(3);
  check_geometry(op, "height", h, oh, kh, a.stride[0], a.pad[0], a.dil[0]);
  check_geometry(op, "width", w, ow, kw, a.stride[1], a.pad[1], a.dil[1]);
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

Strides4 strides_of(const at::Tensor& t) { return Strides4{t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// Element distance between consecutive pixels (w, then h, then n when the inner extents are 1).
int64_t pixel_step(const at::Tensor& t) {
  return t.size(3) > 1 ? t.stride(3) : (t.size(2) > 1 ? t.stride(2) : t.stride(0));
}
bool channels_fast(const at::Tensor& t) { return t.size(1) > 1 && t.stride(1) < pixel_step(t); }

// Vector accesses of v elements along channels: unit channel stride, every other stride that matters a
// multiple of v, and a base pointer aligned to the vector size.
bool vec_ok(const at::Tensor& t, int64_t v) {
  if (t.size(1) > 1 && t.stride(1) != 1) return false;
  for (int d : {0, 2, 3}) {
    if (t.size(d) > 1 && t.stride(d) % v != 0) return false;
  }
  return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % (v * t.element_size()) == 0;
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
      TORCH_CHECK(false, "cnnkern depthwise_conv2d: unsupported dtype ", st);
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

// Largest dynamic shared memory a block may opt into on the current device.
size_t smem_optin_limit(int device) {
  int bytes = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<size_t>(std::max(bytes, 48 * 1024));
}

// Runs a gather problem (forward, or input-grad) on the kernel its layout calls for.
//   channel_fast: channels-last source/output -> direct kernel, 16-byte channel vectors when vec;
//   otherwise the shared-memory tiled kernel, or the direct kernel (one channel per block) for the
//   residue form and for filters whose halo tile does not fit in shared memory.
template <class T>
void run_gather(const DwGather<T>& g, bool channel_fast, bool vec, int mi, int device, cudaStream_t stream) {
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  if (!channel_fast && !g.residue) {
    DwTiledParams<T> tp;
    if (dw_plan_tiled(g, smem_optin_limit(device), &tp)) {
      launch_dw_tiled<T>(tp, stream);
      return;
    }
  }
  const int v = channel_fast && vec ? kV : 1;
  const DwDirectParams<T> dp = dw_plan_direct(g, v, channel_fast);
  TORCH_CHECK(dp.grid_x < (1u << 31), "cnnkern depthwise_conv2d: too many blocks for one launch (",
              g.n, " x ", g.out_c, " x ", g.out_h, " x ", g.out_w, " outputs); split the batch");
  launch_dw_direct<T>(dp, v, v > 1 ? mi : 1, dw_direct_window_k(dp, v), stream);
}

// ---- ops -------------------------------------------------------------------------------------------

void depthwise_conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                          const at::Tensor& out, at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkern depthwise_conv2d_fwd";
  const DwArgs a = parse_args(op, stride, padding, dilation);
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
  const DwShape s = make_shape(op, x, w, out, "x", "weight", "out", a);
  check_output(op, "out", out, {x, w, has_bias ? *bias : at::Tensor()});

  c10::cuda::CUDAGuard guard(x.device());
  if (out.numel() == 0) return;
  if (x.numel() == 0) {  // empty reduction (H or W is 0): out = bias (or 0)
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
    const bool channel_fast = channels_fast(x);
    // A vector of V output channels reads V/m input channels: m must divide V (1 or 2 are built).
    const bool vec = channel_fast && (s.mult == 1 || s.mult == 2) && s.c_out % V == 0 && vec_ok(x, V / s.mult) &&
                     vec_ok(out, V);
    const DwGather<T> g = dw_fwd_gather<T>(s, in_ptr<T>(x), strides_of(x), in_ptr<T>(w), strides_of(w),
                                           has_bias ? in_ptr<T>(*bias) : nullptr, has_bias ? bias->stride(0) : 0,
                                           out_ptr<T>(out), strides_of(out));
    run_gather<T>(g, channel_fast, vec, s.mult, x.get_device(), stream);
  });
}

void depthwise_conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w, const at::Tensor& grad_in,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkern depthwise_conv2d_bwd_input";
  const DwArgs a = parse_args(op, stride, padding, dilation);
  check_tensor(op, "grad_out", grad_out, "grad_out", grad_out);
  check_tensor(op, "weight", w, "grad_out", grad_out);
  check_tensor(op, "grad_in", grad_in, "grad_out", grad_out);
  check_dtype_and_device(op, grad_out);
  const DwShape s = make_shape(op, grad_in, w, grad_out, "grad_in", "weight", "grad_out", a);
  check_output(op, "grad_in", grad_in, {grad_out, w});

  c10::cuda::CUDAGuard guard(grad_out.device());
  if (grad_in.numel() == 0) return;
  if (grad_out.numel() == 0) {  // nothing reaches the input
    grad_in.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(grad_out.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int64_t V = 16 / sizeof(T);
    const bool channel_fast = channels_fast(grad_out);
    // Each input channel sums m output channels: vectors only without a multiplier.
    const bool vec = channel_fast && s.mult == 1 && s.c % V == 0 && vec_ok(grad_out, V) && vec_ok(grad_in, V);
    const DwGather<T> g = dw_dgrad_gather<T>(s, in_ptr<T>(grad_out), strides_of(grad_out), in_ptr<T>(w),
                                             strides_of(w), out_ptr<T>(grad_in), strides_of(grad_in));
    run_gather<T>(g, channel_fast, vec, 1, grad_out.get_device(), stream);
  });
}

void depthwise_conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grad_w,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 bool deterministic) {
  constexpr const char* op = "cnnkern depthwise_conv2d_bwd_weight";
  const DwArgs a = parse_args(op, stride, padding, dilation);
  check_tensor(op, "grad_out", grad_out, "x", x);
  check_tensor(op, "x", x, "x", x);
  check_tensor(op, "grad_weight", grad_w, "x", x);
  check_dtype_and_device(op, x);
  const DwShape s = make_shape(op, x, grad_w, grad_out, "x", "grad_weight", "grad_out", a);
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

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("depthwise_conv2d_fwd", &depthwise_conv2d_fwd);
  m.impl("depthwise_conv2d_bwd_input", &depthwise_conv2d_bwd_input);
  m.impl("depthwise_conv2d_bwd_weight", &depthwise_conv2d_bwd_weight);
}

}  // namespace cnnkern
