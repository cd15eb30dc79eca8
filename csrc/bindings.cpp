// The Python module of the extension: build metadata only. The ops are reached through torch.ops.cnnkern_cuda;
// each op's schema is registered beside its kernels with TORCH_LIBRARY_FRAGMENT (every file uses a fragment,
// so no file owns the namespace and adding an op touches only its own files):
//   csrc/cuda/<family>.cu      out-variant ops (*_fwd, *_bwd_*, channel_map): schema + CUDA kernel
//   csrc/ops/<op>.cpp          functional ops: schema, output spec, Meta kernel
//   csrc/cpu/<op>.cpp          their CPU kernels (ATen), csrc/cuda/<op>_functional.cpp their CUDA kernels,
//   csrc/autograd/<op>.cpp     their Autograd kernels (C++ autograd Functions, differentiable backward)
#include <string>

#include <cuda.h>  // CUDA_VERSION of the toolkit we were compiled with
#include <pybind11/pybind11.h>
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

namespace cnnkern {
// csrc/cuda/conv2d_fwd_sm90.cu: nullptr when the sm_90a wgmma forward is enabled (CNNKERN_SM90_WGMMA=1),
// built (sm_90a code) and the device is sm_90; else the reason.
const char* sm90_wgmma_gate(int device);
}  // namespace cnnkern

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
  m.def(
      "sm90_wgmma_gate",
      [](int device) {
        const char* why = cnnkern::sm90_wgmma_gate(device);
        return std::string(why == nullptr ? "" : why);
      },
      "'' when the sm_90a wgmma conv2d forward may run on `device` (env, build, device); else why not.");
}
