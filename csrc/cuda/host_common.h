// Host side shared by the conv op families in csrc/cuda/*.cu: argument and tensor checks with
// PyTorch-style messages, layout queries, dtype dispatch, and the fwd / input-grad / weight-grad op
// protocol they all follow. Header-only so that each op file stays one translation unit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/MemoryOverlap.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "conv/conv2d_params.cuh"

namespace cnnkern::host {

// Coordinates including padding and dilation are int32 in the kernels; keep them far from overflow.
inline constexpr int64_t kCoordLimit = int64_t{1} << 30;

struct ConvArgs {
  int64_t stride[2];
  int64_t pad[2];
  int64_t dil[2];
  int64_t groups;  // the depthwise ops take no groups argument: 1 there, and unused
};

inline ConvArgs parse_args(const char* op, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                           int64_t groups = 1) {
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

inline void check_tensor(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                         const at::Tensor& ref) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-D, got shape ", t.sizes());
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a strided (dense) tensor");
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got device ", t.device());
  TORCH_CHECK(t.device() == ref.device(), op, ": all tensors must be on the same device; ", name, " is on ",
              t.device(), " but ", ref_name, " is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": all tensors must have the same dtype; ", name, " is ",
              t.scalar_type(), " but ", ref_name, " is ", ref.scalar_type());
}

inline void check_dtype(const char* op, const at::Tensor& t) {
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, op,
              ": supported dtypes are float32, float16 and bfloat16, got ", st);
}

// (ATen/cuda/CUDAContext.h would pull in cuSPARSE/cuBLAS headers; a plain attribute query suffices.)
inline int device_attribute(cudaDeviceAttr attr, int device) {
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, device));
  return value;
}

// check_dtype, plus compute capability >= 8.0 for the 16-bit types, whose GEMM kernels use tensor cores.
inline void check_dtype_tensor_cores(const char* op, const at::Tensor& t) {
  check_dtype(op, t);
  const auto st = t.scalar_type();
  if (st != at::kFloat) {
    const int major = device_attribute(cudaDevAttrComputeCapabilityMajor, t.get_device());
    const int minor = device_attribute(cudaDevAttrComputeCapabilityMinor, t.get_device());
    TORCH_CHECK(major >= 8, op, ": ", st, " kernels use tensor cores and need compute capability >= 8.0; ",
                t.device(), " is sm_", major, minor);
  }
}

inline bool present(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// A forward's optional bias: shape (C_out), on x's device with x's dtype. Returns whether it is there.
inline bool check_bias(const char* op, const std::optional<at::Tensor>& bias, int64_t c_out, const at::Tensor& x) {
  if (!present(bias)) return false;
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == c_out, op, ": bias must have shape (C_out=", c_out, "), got ",
              bias->sizes());
  TORCH_CHECK(bias->device() == x.device() && bias->scalar_type() == x.scalar_type(), op,
              ": bias must match x in device and dtype; bias is ", bias->scalar_type(), " on ", bias->device(),
              ", x is ", x.scalar_type(), " on ", x.device());
  return true;
}

// A forward output with an empty reduction (no input channels or no filter taps): the bias, or 0.
inline void fill_bias_or_zero(const at::Tensor& out, const std::optional<at::Tensor>& bias) {
  if (present(bias)) {
    out.copy_(bias->view({1, -1, 1, 1}).expand_as(out));
  } else {
    out.zero_();
  }
}

inline void check_output(const char* op, const char* name, const at::Tensor& out,
                         std::initializer_list<at::Tensor> inputs) {
  TORCH_CHECK(at::has_internal_overlap(out) != at::MemOverlap::Yes, op, ": ", name,
              " has internal overlap (e.g. an expanded tensor); every output element must have its own memory");
  for (const at::Tensor& in : inputs) {
    if (in.defined()) at::assert_no_overlap(out, in);
  }
}

// Output extent for top/left padding `pad` and bottom/right padding `pad_hi`; -1 if the dilated
// kernel does not fit.
inline int64_t out_extent(int64_t in, int64_t pad, int64_t pad_hi, int64_t k, int64_t stride, int64_t dil) {
  const int64_t span = in + pad + pad_hi - dil * (k - 1) - 1;
  return span < 0 ? -1 : span / stride + 1;
}

// Bottom/right padding is implied by the shapes (any amount >= 0, e.g. asymmetric 'same' or explicit
// 4-sided padding), so the output extent must be at least the one with zero bottom/right padding.
inline void check_geometry(const char* op, const char* what, int64_t in, int64_t out, int64_t k, int64_t stride,
                           int64_t pad, int64_t dil) {
  const int64_t least = std::max<int64_t>(1, out_extent(in, pad, 0, k, stride, dil));
  TORCH_CHECK(out >= least, op, ": output ", what, " ", out, " is impossible for input ", what, " ", in,
              " with kernel ", k, ", stride ", stride, ", top/left padding ", pad, ", dilation ", dil,
              " (at least ", least, "; symmetric padding gives ", out_extent(in, pad, pad, k, stride, dil), ")");
  TORCH_CHECK(in + pad + 1 + dil * (k - 1) < kCoordLimit && (out + 1) * stride + pad < kCoordLimit, op, ": ", what,
              " extents too large for 32-bit coordinates");
}

// The checks every family's make_shape makes once its channel rules have passed: a positive kernel,
// y_like of shape (N, C_out, ...), and output extents the rest of the geometry can give.
inline void check_out_shape(const char* op, const at::Tensor& x_like, const at::Tensor& w_like,
                            const at::Tensor& y_like, const char* x_name, const char* w_name, const char* y_name,
                            const ConvArgs& a) {
  const int64_t n = x_like.size(0), c_out = w_like.size(0), kh = w_like.size(2), kw = w_like.size(3);
  TORCH_CHECK(kh > 0 && kw > 0, op, ": kernel size must be positive, got ", w_name, " shape ", w_like.sizes());
  TORCH_CHECK(y_like.size(0) == n && y_like.size(1) == c_out, op, ": ", y_name, " shape ", y_like.sizes(),
              " must be (N=", n, ", C_out=", c_out, ", OH, OW) for ", x_name, " shape ", x_like.sizes(), " and ",
              w_name, " shape ", w_like.sizes());
  check_geometry(op, "height", x_like.size(2), y_like.size(2), kh, a.stride[0], a.pad[0], a.dil[0]);
  check_geometry(op, "width", x_like.size(3), y_like.size(3), kw, a.stride[1], a.pad[1], a.dil[1]);
}

inline Strides4 strides_of(const at::Tensor& t) {
  return Strides4{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// Element distance between consecutive pixels (w, then h, then n when the inner extents are 1).
inline int64_t pixel_step(const at::Tensor& t) {
  return t.size(3) > 1 ? t.stride(3) : (t.size(2) > 1 ? t.stride(2) : t.stride(0));
}
inline bool channels_fast(const at::Tensor& t) { return t.size(1) > 1 && t.stride(1) < pixel_step(t); }

// Vector accesses of v elements along channels: unit channel stride, every other stride that matters a
// multiple of v, and a base pointer aligned to the vector size.
inline bool vec_ok(const at::Tensor& t, int64_t v) {
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

// Calls f(Tag<T>{}) for the element type of st. `family` prefixes the error for other dtypes, which
// check_dtype has normally rejected already.
template <class F>
void dispatch(const char* family, at::ScalarType st, F&& f) {
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
      TORCH_CHECK(false, family, ": unsupported dtype ", st);
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

// What the op drivers below need from a family: its extra dtype/device rule, and its shape checks
// for activation x_like, weight w_like and the other activation y_like.
template <class Shape>
struct OpFamily {
  const char* name;  // prefixes the error for an unsupported dtype
  void (*check_dtype_and_device)(const char* op, const at::Tensor& t);
  Shape (*make_shape)(const char* op, const at::Tensor& x_like, const at::Tensor& w_like, const at::Tensor& y_like,
                      const char* x_name, const char* w_name, const char* y_name, const ConvArgs& a);
};

// The drivers check in the order errors are reported (tensors, dtype and device, shapes, output
// memory), guard the device, finish outputs with nothing to compute, then run
// body(Tag<T>{}, shape, ..., stream) for the dtype on the current stream.

template <class Shape, class Body>
void run_fwd(const char* op, const OpFamily<Shape>& f, const ConvArgs& a, const at::Tensor& x, const at::Tensor& w,
             const std::optional<at::Tensor>& bias, const at::Tensor& out, Body&& body) {
  check_tensor(op, "x", x, "x", x);
  check_tensor(op, "weight", w, "x", x);
  check_tensor(op, "out", out, "x", x);
  f.check_dtype_and_device(op, x);
  const bool has_bias = check_bias(op, bias, w.size(0), x);
  const Shape s = f.make_shape(op, x, w, out, "x", "weight", "out", a);
  check_output(op, "out", out, {x, w, has_bias ? *bias : at::Tensor()});

  c10::cuda::CUDAGuard guard(x.device());
  if (out.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) {
    fill_bias_or_zero(out, bias);
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(f.name, x.scalar_type(), [&](auto tag) { body(tag, s, has_bias, stream); });
}

template <class Shape, class Body>
void run_dgrad(const char* op, const OpFamily<Shape>& f, const ConvArgs& a, const at::Tensor& grad_out,
               const at::Tensor& w, const at::Tensor& grad_in, Body&& body) {
  check_tensor(op, "grad_out", grad_out, "grad_out", grad_out);
  check_tensor(op, "weight", w, "grad_out", grad_out);
  check_tensor(op, "grad_in", grad_in, "grad_out", grad_out);
  f.check_dtype_and_device(op, grad_out);
  const Shape s = f.make_shape(op, grad_in, w, grad_out, "grad_in", "weight", "grad_out", a);
  check_output(op, "grad_in", grad_in, {grad_out, w});

  c10::cuda::CUDAGuard guard(grad_out.device());
  if (grad_in.numel() == 0) return;
  if (grad_out.numel() == 0 || w.numel() == 0) {  // nothing reaches the input
    grad_in.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(f.name, grad_out.scalar_type(), [&](auto tag) { body(tag, s, stream); });
}

template <class Shape, class Body>
void run_wgrad(const char* op, const OpFamily<Shape>& f, const ConvArgs& a, const at::Tensor& grad_out,
               const at::Tensor& x, const at::Tensor& grad_w, Body&& body) {
  check_tensor(op, "grad_out", grad_out, "x", x);
  check_tensor(op, "x", x, "x", x);
  check_tensor(op, "grad_weight", grad_w, "x", x);
  f.check_dtype_and_device(op, x);
  const Shape s = f.make_shape(op, x, grad_w, grad_out, "x", "grad_weight", "grad_out", a);
  check_output(op, "grad_weight", grad_w, {grad_out, x});

  c10::cuda::CUDAGuard guard(x.device());
  if (grad_w.numel() == 0) return;
  if (grad_out.numel() == 0 || x.numel() == 0) {  // empty reduction
    grad_w.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(f.name, x.scalar_type(), [&](auto tag) { body(tag, s, stream); });
}

}  // namespace cnnkern::host
