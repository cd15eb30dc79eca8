// CPU kernel of the functional conv_transpose2d, on ATen (see cpu/aten_conv.h for why it exists).
#include <ATen/ops/convolution.h>
#include <torch/library.h>

#include "ops/conv_transpose2d.h"

namespace cnnkern::cpu {
namespace {

at::Tensor conv_transpose2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef output_padding, at::IntArrayRef dilation,
                                int64_t groups) {
  const ops::OutputSpec s =
      ops::conv_transpose2d_spec(input, weight, bias, stride, padding, output_padding, dilation, groups);
  if (s.numel() == 0) return s.allocate(input);  // (also a weight with no output channels, which oneDNN rejects)
  return at::convolution(input, weight, bias, stride, padding, dilation, true, output_padding, groups)
      .contiguous(s.format);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkern_cuda, CPU, m) { m.impl("conv_transpose2d", &conv_transpose2d_cpu); }

}  // namespace cnnkern::cpu
