// What a functional op returns before anything is computed: its size and memory format, decided once (after
// all argument checks) and shared by the op's Meta, CPU and CUDA kernels so they cannot disagree.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>

#include "ops/checks.h"
#include "ops/conv2d_geometry.h"

namespace cnnkern::ops {

struct OutputSpec {
  Size4 size;
  at::MemoryFormat format;

  c10::SymInt numel() const { return size[0] * size[1] * size[2] * size[3]; }
  // An uninitialized tensor of this spec with `like`'s dtype and device.
  at::Tensor allocate(const at::Tensor& like) const { return empty(ref(size), like, format); }
};

}  // namespace cnnkern::ops
