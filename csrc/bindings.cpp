// Op schemas (TORCH_LIBRARY) and the Python module of the extension (build metadata only; the ops
// are reached through torch.ops.cnnkern_cuda). CUDA implementations register in csrc/cuda/.
#include <string>

#include <cuda.h>  // CUDA_VERSION of the toolkit we were compiled with
#include <pybind11/pybind11.h>
#include <torch/library.h>
#include <torch/version.h>

// setup.py passes the arch list as bare tokens with ':' separators, e.g. -DCNNKERN_ARCH_LIST=8.0:9.0+PTX,
// and it is stringized here: no quotes or ';' that shells (ninja) or nvcc could mangle.
#define CNNKERN_STRINGIZE_(x) #x
#define CNNKERN_STRINGIZE(x) CNNKERN_STRINGIZE_(x)
#ifdef CNNKERN_ARCH_LIST
#define CNNKERN_ARCH_LIST_STR CNNKERN_STRINGIZE(CNNKERN_ARCH_LIST)
#else
#define CNNKERN_ARCH_LIST_STR "unknown"
#endif

TORCH_LIBRARY(cnnkern_cuda, m) {
  m.def(
      "conv2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
  m.def(
      "conv2d_bwd_input(Tensor grad_out, Tensor w, Tensor(a!) grad_in, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
  m.def(
      "conv2d_bwd_weight(Tensor grad_out, Tensor x, Tensor(a!) grad_w, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
  m.def(
      "conv_transpose2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> ()");
  m.def(
      "depthwise_conv2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor(a!) out, int[2] stride, int[2] padding, "
      "int[2] dilation) -> ()");
  m.def(
      "depthwise_conv2d_bwd_input(Tensor grad_out, Tensor w, Tensor(a!) grad_in, int[2] stride, int[2] padding, "
      "int[2] dilation) -> ()");
  m.def(
      "depthwise_conv2d_bwd_weight(Tensor grad_out, Tensor x, Tensor(a!) grad_w, int[2] stride, int[2] padding, "
      "int[2] dilation, bool deterministic) -> ()");
  m.def(
      "group_pointwise_conv2d_fwd(Tensor x, Tensor w, Tensor? bias, Tensor? scale, Tensor? shift, Tensor(a!) out, "
      "int groups, int shuffle_groups, int channel_offset, bool relu) -> ()");
  m.def(
      "group_pointwise_conv2d_bwd_input(Tensor grad_out, Tensor w, Tensor? output, Tensor? scale, "
      "Tensor(a!) grad_in, int groups, int shuffle_groups, int channel_offset) -> ()");
  m.def(
      "group_pointwise_conv2d_bwd_weight(Tensor grad_out, Tensor x, Tensor? output, Tensor? scale, "
      "Tensor(a!) grad_w, int groups, int shuffle_groups, int channel_offset) -> ()");
  m.def("channel_shuffle(Tensor src, Tensor(a!) dst, int shuffle_groups, int channel_offset, bool scatter) -> ()");
}

namespace {

std::string arch_list() {
  std::string s = CNNKERN_ARCH_LIST_STR;
  for (char& c : s) {
    if (c == ':') c = ';';
  }
  return s;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "cnnkern CUDA kernels; ops live in torch.ops.cnnkern_cuda";
  m.def(
      "build_info",
      [] {
        pybind11::dict d;
        d["cuda_version"] = std::to_string(CUDA_VERSION / 1000) + "." + std::to_string(CUDA_VERSION % 1000 / 10);
        d["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                             std::to_string(TORCH_VERSION_PATCH);
        d["archs"] = arch_list();
        return d;
      },
      "Toolkit, torch version and CUDA architectures this extension was compiled for.");
}
