// The filter as a GEMM operand, shared by forward and input-gradient: both walk k = (r, s, c) with the
// tap outer, and differ only in which weight dimension indexes the GEMM rows (C_out for forward, C_in for
// the input gradient) and which one the reduction channel.
#pragma once

#include <cstdint>

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_index.cuh"

namespace cnnkern {

template <class T>
struct ConvWeightOperand {
  struct Row {
    int64_t off;
    bool valid;
  };
  struct Kc {
    int64_t off;
    bool valid;
  };
  const T* w;
  int64_t row_stride;   // weight stride of the GEMM row dimension
  int64_t chan_stride;  // weight stride of the reduction channel
  int64_t h_stride, w_stride;
  int rows, k;
  TapChannelIndex tap;  // over (KH, KW, reduction channels)

  CNNKERN_HD Row row(int j) const {
    Row r;
    r.valid = j < rows;
    r.off = r.valid ? j * row_stride : 0;
    return r;
  }
  CNNKERN_HD Kc kc(int ki) const {
    Kc c;
    c.valid = ki < k;
    int r, s, ch;
    tap.split(c.valid ? ki : 0, r, s, ch);
    c.off = ch * chan_stride + r * h_stride + s * w_stride;
    return c;
  }
  template <int V>
  CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
    if (r.valid && c.valid) return Vec<T, V>::load(w + r.off + c.off);
    return Vec<T, V>::zeros();
  }
  CNNKERN_HD const T* addr(const Row& r, const Kc& c, bool& valid) const {
    valid = r.valid && c.valid;
    return valid ? w + r.off + c.off : w;
  }
};

}  // namespace cnnkern
