// Host side of cnnkern_cuda::group_pointwise_conv2d_{fwd,bwd_input,bwd_weight}: argument checks (a defence
// behind the Python-side validation), dtype dispatch, choice of gather mapping / split-K, launches on the
// current stream. The conv's output channel c is stored at (forward) or its gradient read from
// (backward) channel dest(c) of a `total`-channel tensor, dest being the ChannelMap of
// cnnkern/ops/_group_pointwise_args.py given by (shuffle_groups, channel_offset).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include "common/gemm_tile.cuh"
#include "cuda/group_pointwise_conv2d_launch.h"
#include "cuda/group_pointwise_conv2d_smallk_launch.h"
#include "cuda/host_common.h"
#include "cuda/host_epilogue.h"
#include "cuda/host_ops.h"

namespace cnnkern {
namespace {

using namespace host;

// GEMM and channel indices are int32 in the kernels (with up to a tile of overshoot).
constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max() - 4096;
constexpr int64_t kGridYZLimit = 65535;

template <class T>
const T* opt_ptr(const std::optional<at::Tensor>& t) {
  return present(t) ? in_ptr<T>(*t) : nullptr;
}

// Checks activation x_like (n, c_in, h, w), the 1x1 weight, and the stored tensor y_like (n, total,
// h, w) in which the conv's c_out channels sit at dest(c); builds the kernel shape.
GpwShape make_shape(const char* op, const at::Tensor& x_like, const at::Tensor& w, const at::Tensor& y_like,
                    const char* x_name, const char* w_name, const char* y_name, int64_t groups,
                    int64_t shuffle_groups, int64_t offset) {
  const int64_t n = x_like.size(0), c_in = x_like.size(1), h = x_like.size(2), wd = x_like.size(3);
  const int64_t c_out = w.size(0), cg_in = w.size(1), total = y_like.size(1);
  TORCH_CHECK(w.size(2) == 1 && w.size(3) == 1, op, ": ", w_name, " must be a 1x1 filter (C_out, C_in/groups, 1, 1), "
              "got shape ", w.sizes());
  TORCH_CHECK(groups > 0, op, ": groups must be positive, got ", groups);
  TORCH_CHECK(groups <= kGridYZLimit, op, ": groups=", groups, " exceeds the grid limit ", kGridYZLimit);
  TORCH_CHECK(c_in % groups == 0, op, ": ", x_name, " has ", c_in, " channels, not divisible by groups=", groups);
  TORCH_CHECK(c_out % groups == 0, op, ": ", w_name, " has ", c_out, " output channels, not divisible by groups=",
              groups);
  TORCH_CHECK(cg_in * groups == c_in, op, ": ", w_name, " shape ", w.sizes(), " expects ", cg_in * groups,
              " input channels (", cg_in, " per group x groups=", groups, ") but ", x_name, " shape ",
              x_like.sizes(), " has ", c_in);
  TORCH_CHECK(y_like.size(0) == n && y_like.size(2) == h && y_like.size(3) == wd, op, ": ", y_name, " shape ",
              y_like.sizes(), " must be (N=", n, ", C, H=", h, ", W=", wd, ") for ", x_name, " shape ",
              x_like.sizes());
  TORCH_CHECK(shuffle_groups > 0 && total % shuffle_groups == 0, op, ": shuffle_groups=", shuffle_groups,
              " must be positive and divide the ", total, " channels of ", y_name);
  TORCH_CHECK(offset >= 0 && offset + c_out <= total, op, ": channels [", offset, ", ", offset + c_out,
              ") of this conv do not fit the ", total, " channels of ", y_name, " shape ", y_like.sizes());
  TORCH_CHECK(n * h * wd <= kIndexLimit, op, ": N*H*W = ", n * h * wd,
              " exceeds the 32-bit pixel index limit; split the batch");
  TORCH_CHECK(c_in <= kIndexLimit && total <= kIndexLimit && c_out * std::max<int64_t>(cg_in, 1) <= kIndexLimit,
              op, ": too many channels for 32-bit indexing: ", w_name, " shape ", w.sizes(), ", ", y_name,
              " shape ", y_like.sizes());
  TORCH_CHECK((std::max(cg_in, c_out / groups) + 63) / 64 <= kGridYZLimit, op, ": too many channels per group");
  auto i = [](int64_t v) { return static_cast<int>(v); };
  return GpwShape{i(n),      i(h),           i(wd),     i(c_in), i(c_out), i(groups), i(cg_in), i(c_out / groups),
                  i(total), i(shuffle_groups), i(offset)};
}

void check_common(const char* op, const at::Tensor& a, const char* a_name, std::initializer_list<const char*> names,
                  std::initializer_list<const at::Tensor*> ts) {
  check_tensor(op, a_name, a, a_name, a);
  auto name = names.begin();
  for (const at::Tensor* t : ts) check_tensor(op, *name++, *t, a_name, a);
  check_dtype_tensor_cores(op, a);
}

void check_saved_output(const char* op, const std::optional<at::Tensor>& output, const at::Tensor& grad_out) {
  if (!present(output)) return;
  check_tensor(op, "output", *output, "grad_out", grad_out);
  TORCH_CHECK(output->sizes() == grad_out.sizes(), op, ": output shape ", output->sizes(),
              " must equal grad_out shape ", grad_out.sizes());
}

}  // namespace

// ---- ops (declared in cuda/host_ops.h) -----------------------------------------------------------

namespace cuda {

using namespace host;

namespace {

// The forward; with `passthrough` (channels [0, channel_offset) of the concatenated order) also those
// channels of out: fused into the small-K kernel's store where its plan takes them, else written first
// by channel_map_scatter_fill (whole vectors: the conv then overwrites its own words).
void gpw_fwd(const at::Tensor* passthrough, const at::Tensor& x, const at::Tensor& w,
             const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
             const std::optional<at::Tensor>& shift, const at::Tensor& out, int64_t groups, int64_t shuffle_groups,
             int64_t channel_offset, bool relu) {
  constexpr const char* op = "cnnkern group_pointwise_conv2d_fwd";
  check_common(op, x, "x", {"weight", "out"}, {&w, &out});
  const GpwShape s = make_shape(op, x, w, out, "x", "weight", "out", groups, shuffle_groups, channel_offset);
  if (passthrough != nullptr) {
    check_tensor(op, "passthrough", *passthrough, "x", x);
    TORCH_CHECK(passthrough->dim() == 4 && passthrough->size(0) == s.n && passthrough->size(1) == channel_offset &&
                    passthrough->size(2) == s.h && passthrough->size(3) == s.w && channel_offset + s.c_out == s.total,
                op, ": passthrough shape ", passthrough->sizes(), " must be (N=", s.n, ", C=", channel_offset,
                ", H=", s.h, ", W=", s.w, ") and fill out shape ", out.sizes(), " with the conv's ", s.c_out,
                " channels");
  }
  check_vector(op, "bias", bias, w.size(0), x, false);
  check_vector(op, "scale", scale, w.size(0), x, true);
  check_vector(op, "shift", shift, w.size(0), x, true);
  check_output(op, "out", out,
               {x, w, present(bias) ? *bias : at::Tensor(), present(scale) ? *scale : at::Tensor(),
                present(shift) ? *shift : at::Tensor()});

  c10::cuda::CUDAGuard guard(x.device());
  if (int64_t{s.n} * s.h * s.w == 0) return;
  if (s.c_out == 0) {  // nothing of this conv is stored
    if (passthrough != nullptr) cuda::channel_map_scatter_fill(*passthrough, out, shuffle_groups, 0);
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch("cnnkern group_pointwise_conv2d", x.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int64_t V = 16 / sizeof(T);
    // The kernels' parameters with the weight as given (small-K kernel) or re-laid out (implicit GEMM).
    auto params = [&](const at::Tensor& weight) {
      return GpwFwdParams<T>{s,
                             in_ptr<T>(x),
                             strides_of(x),
                             in_ptr<T>(weight),
                             strides_of(weight),
                             opt_ptr<T>(bias),
                             present(bias) ? bias->stride(0) : 0,
                             channel_vec(scale),
                             channel_vec(shift),
                             relu,
                             out_ptr<T>(out),
                             strides_of(out)};
    };
    // channels_last problems with a short per-group reduction: the dedicated small-K kernel (whole
    // pixel slabs, all groups per CTA, shuffled tile stored with 16-byte vectors); plan_gpw_smallk says
    // why not otherwise, and the implicit GEMM below takes the rest.
    {
      GpwSmallKProblem<T> q = gpw_smallk_fwd_problem(params(w));
      const int sms = device_attribute(cudaDevAttrMultiProcessorCount, x.get_device());
      if (passthrough != nullptr) {
        q.pass = in_ptr<T>(*passthrough);
        q.pss = strides_of(*passthrough);
        q.c_pass = static_cast<int>(channel_offset);
        const GpwSmallKPlan fused = plan_gpw_smallk(q, sms);
        if (fused.use()) {
          launch_group_pointwise_conv2d_smallk<T>(q, fused, stream);
          return;
        }
        cuda::channel_map_scatter_fill(*passthrough, out, shuffle_groups, 0);
        q.pass = nullptr;
        q.c_pass = 0;
      }
      const GpwSmallKPlan plan = plan_gpw_smallk(q, sms);
      if (plan.use()) {
        launch_group_pointwise_conv2d_smallk<T>(q, plan, stream);
        return;
      }
    }
    at::Tensor wk = w;
    GatherMap map = GatherMap::kPixelFast;
    if (channels_fast(x)) {
      map = GatherMap::kChannelFast;
      if (s.cg_in % V == 0 && vec_ok(x, V)) {
        // The weight is small: give it the matching contiguous layout if it lacks it.
        if (!vec_ok(wk, V)) wk = w.contiguous();
        if (vec_ok(wk, V)) map = GatherMap::kChannelVec;
      }
    }
    launch_group_pointwise_conv2d_fwd<T>(params(wk), map, !channels_fast(out), stream);
  });
}

}  // namespace

void group_pointwise_conv2d_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                                const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                const at::Tensor& out, int64_t groups, int64_t shuffle_groups, int64_t channel_offset,
                                bool relu) {
  gpw_fwd(nullptr, x, w, bias, scale, shift, out, groups, shuffle_groups, channel_offset, relu);
}

void group_pointwise_conv2d_fwd_cat(const at::Tensor& passthrough, const at::Tensor& x, const at::Tensor& w,
                                    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
                                    const std::optional<at::Tensor>& shift, const at::Tensor& out, int64_t groups,
                                    int64_t shuffle_groups, int64_t channel_offset, bool relu) {
  gpw_fwd(&passthrough, x, w, bias, scale, shift, out, groups, shuffle_groups, channel_offset, relu);
}

void group_pointwise_conv2d_bwd_input(const at::Tensor& grad_out, const at::Tensor& w,
                                      const std::optional<at::Tensor>& output, const std::optional<at::Tensor>& scale,
                                      const at::Tensor& grad_in, int64_t groups, int64_t shuffle_groups,
                                      int64_t channel_offset) {
  constexpr const char* op = "cnnkern group_pointwise_conv2d_bwd_input";
  check_common(op, grad_out, "grad_out", {"weight", "grad_in"}, {&w, &grad_in});
  check_saved_output(op, output, grad_out);
  const GpwShape s =
      make_shape(op, grad_in, w, grad_out, "grad_in", "weight", "grad_out", groups, shuffle_groups, channel_offset);
  check_vector(op, "scale", scale, w.size(0), grad_out, true);
  check_output(op, "grad_in", grad_in,
               {grad_out, w, present(output) ? *output : at::Tensor(), present(scale) ? *scale : at::Tensor()});

  c10::cuda::CUDAGuard guard(grad_out.device());
  if (grad_in.numel() == 0) return;
  if (s.c_out == 0) {  // nothing reaches the input
    grad_in.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch("cnnkern group_pointwise_conv2d", grad_out.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const GpwDgradParams<T> p{s,
                              in_ptr<T>(grad_out),
                              strides_of(grad_out),
                              opt_ptr<T>(output),
                              present(output) ? strides_of(*output) : Strides4{0, 0, 0, 0},
                              in_ptr<T>(w),
                              strides_of(w),
                              channel_vec(scale),
                              out_ptr<T>(grad_in),
                              strides_of(grad_in)};
    // channels_last problems with a short per-group reduction (cg_out here): the small-K kernel on the
    // turned-around problem (dy's slabs gathered through the inverse shuffle and masked in shared memory,
    // dx's slab stored whole); plan_gpw_smallk says why not otherwise, and the implicit GEMM takes the rest.
    {
      const GpwSmallKProblem<T> q = gpw_smallk_dgrad_problem(p);
      const GpwSmallKPlan plan =
          plan_gpw_smallk(q, device_attribute(cudaDevAttrMultiProcessorCount, grad_out.get_device()));
      if (plan.use()) {
        launch_group_pointwise_conv2d_smallk_dgrad<T>(q, plan, stream);
        return;
      }
    }
    launch_group_pointwise_conv2d_dgrad<T>(p, channels_fast(grad_out), !channels_fast(grad_in), stream);
  });
}

void group_pointwise_conv2d_bwd_weight(const at::Tensor& grad_out, const at::Tensor& x,
                                       const std::optional<at::Tensor>& output,
                                       const std::optional<at::Tensor>& scale, const at::Tensor& grad_w,
                                       int64_t groups, int64_t shuffle_groups, int64_t channel_offset) {
  constexpr const char* op = "cnnkern group_pointwise_conv2d_bwd_weight";
  check_common(op, x, "x", {"grad_out", "grad_weight"}, {&grad_out, &grad_w});
  check_saved_output(op, output, grad_out);
  const GpwShape s =
      make_shape(op, x, grad_w, grad_out, "x", "grad_weight", "grad_out", groups, shuffle_groups, channel_offset);
  check_vector(op, "scale", scale, grad_w.size(0), x, true);
  check_output(op, "grad_weight", grad_w,
               {grad_out, x, present(output) ? *output : at::Tensor(), present(scale) ? *scale : at::Tensor()});

  c10::cuda::CUDAGuard guard(x.device());
  if (grad_w.numel() == 0) return;
  if (int64_t{s.n} * s.h * s.w == 0) {  // empty reduction
    grad_w.zero_();
    return;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch("cnnkern group_pointwise_conv2d", x.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Tile = GemmTile<T>;
    GpwWgradParams<T> p{s,
                        in_ptr<T>(grad_out),
                        strides_of(grad_out),
                        opt_ptr<T>(output),
                        present(output) ? strides_of(*output) : Strides4{0, 0, 0, 0},
                        in_ptr<T>(x),
                        strides_of(x),
                        channel_vec(scale),
                        nullptr,
                        0,
                        0,
                        out_ptr<T>(grad_w),
                        strides_of(grad_w)};
    // channels_last 16-bit problems with short per-group products: the small-K kernel (each CTA streams a
    // fixed range of pixel slabs, products in mma.sync registers, one fp32 partial per CTA); why_not
    // otherwise, and the GEMM's split-K takes the rest. Both reduce the partials in a fixed order.
    const GpwWgradPlan small = plan_gpw_smallk_wgrad(p);
    if (small.use()) {
      at::Tensor workspace = at::empty({small.splits, s.c_out, s.cg_in}, x.options().dtype(at::kFloat));
      p.workspace = workspace.mutable_data_ptr<float>();
      p.splits = small.splits;
      launch_group_pointwise_conv2d_smallk_wgrad<T>(p, small, stream);
      return;
    }
    const SplitKPlan plan = gpw_wgrad_plan(s, Tile::kBM, Tile::kBN, Tile::kBK);
    at::Tensor workspace = at::empty({plan.splits, s.c_out, s.cg_in}, x.options().dtype(at::kFloat));
    p.workspace = workspace.mutable_data_ptr<float>();
    p.splits = plan.splits;
    p.k_per_split = plan.k_per_split;
    launch_group_pointwise_conv2d_wgrad<T>(p, channels_fast(x), stream);
  });
}

}  // namespace cuda

// The out-variant ops: out / grad_in / grad_w preallocated by the caller (any strides).
TORCH_LIBRARY_FRAGMENT(cnnkern_cuda, m) {
  m.def(
      "group_pointwise_conv2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor? scale, Tensor? shift, Tensor(a!) out, "
      "int groups, int shuffle_groups, int channel_offset, bool relu) -> ()");
  m.def(
      "group_pointwise_conv2d_bwd_input(Tensor grad_out, Tensor w, Tensor? output, Tensor? scale, "
      "Tensor(a!) grad_in, int groups, int shuffle_groups, int channel_offset) -> ()");
  m.def(
      "group_pointwise_conv2d_bwd_weight(Tensor grad_out, Tensor x, Tensor? output, Tensor? scale, "
      "Tensor(a!) grad_w, int groups, int shuffle_groups, int channel_offset) -> ()");
}

TORCH_LIBRARY_IMPL(cnnkern_cuda, CUDA, m) {
  m.impl("group_pointwise_conv2d_fwd", &cuda::group_pointwise_conv2d_fwd);
  m.impl("group_pointwise_conv2d_bwd_input", &cuda::group_pointwise_conv2d_bwd_input);
  m.impl("group_pointwise_conv2d_bwd_weight", &cuda::group_pointwise_conv2d_bwd_weight);
}

}  // namespace cnnkern
