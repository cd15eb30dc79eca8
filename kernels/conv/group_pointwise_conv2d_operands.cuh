// GEMM operands and the epilogue of the grouped pointwise conv (see implicit_gemm.cuh for the contract).
// A 1x1 convolution with stride 1 and no padding is a plain GEMM over (pixel, channel): no taps, no
// bounds per element, so these are simpler (and cheaper in the mainloop) than the conv2d operands.
#pragma once

#include <cstdint>

#include "common/implicit_gemm.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

// An activation tensor as a (pixel, channel) matrix, channels read through a ShuffleMap (the shuffled
// store of the forward, read back by the backward). kPixelRows: GEMM rows are pixels and K runs over
// channels (forward, input grad); otherwise rows are channels and K runs over pixels (weight grad).
// With a mask tensor (the saved ReLU output, same shape, own strides) an element reads as zero where
// the mask is not positive, so the masked gradient is never materialised.
template <class T, bool kPixelRows>
struct ActOperand {
  struct Pos {
    int64_t off;   // in t
    int64_t moff;  // in mask
    bool valid;
  };
  using Row = Pos;
  using Kc = Pos;

  const T* t;
  Strides4 ts;
  const T* mask;  // nullptr: no ReLU mask
  Strides4 ms;
  int pixels, channels;
  int c0;  // this group's first channel, before the map
  PixelIndex pix;
  ShuffleMap map;

  CNNKERN_HD Pos pixel(int m) const {
    Pos p;
    p.valid = m < pixels;
    int n, y, x;
    pix.split(p.valid ? m : 0, n, y, x);
    p.off = n * ts.n + y * ts.h + x * ts.w;
    p.moff = n * ms.n + y * ms.h + x * ms.w;
    return p;
  }
  CNNKERN_HD Pos channel(int c) const {
    Pos p;
    p.valid = c < channels;
    const int d = map.dest(c0 + (p.valid ? c : 0));
    p.off = d * ts.c;
    p.moff = d * ms.c;
    return p;
  }
  CNNKERN_HD Row row(int r) const { return kPixelRows ? pixel(r) : channel(r); }
  CNNKERN_HD Kc kc(int k) const { return kPixelRows ? channel(k) : pixel(k); }

  // V > 1 only for an identity map over unit-stride channels (host-checked): the V channels are
  // then V consecutive elements.
  template <int V>
  CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
    if (!(r.valid && c.valid)) return Vec<T, V>::zeros();
    Vec<T, V> v = Vec<T, V>::load(t + r.off + c.off);
    if (mask != nullptr) {
      const Vec<T, V> m = Vec<T, V>::load(mask + r.moff + c.moff);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if (!(Num<T>::to_float(m.v[j]) > 0.0f)) v.v[j] = Num<T>::zero();
      }
    }
    return v;
  }
  // cp.async route: a plain copy unless the ReLU mask applies.
  CNNKERN_HD bool copyable() const { return mask == nullptr; }
  CNNKERN_HD const T* addr(const Row& r, const Kc& c, bool& valid) const {
    valid = r.valid && c.valid;
    return valid ? t + r.off + c.off : t;
  }
};

// The 1x1 filter as a matrix: element (r, k) at w[r * row_stride + k * k_stride]. With a scale, the
// K index is an output channel and each element is multiplied by scale[scale_c0 + k] (the input
// gradient of the folded-BN epilogue), rounded once to T as the unfused grad * scale would be.
template <class T>
struct WeightOperand {
  struct Row {
    int64_t off;
    bool valid;
  };
  struct Kc {
    int64_t off;
    int k;
    bool valid;
  };
  const T* w;
  int64_t row_stride, k_stride;
  int rows, k;
  ChannelVec scale;
  int scale_c0;

  CNNKERN_HD Row row(int r) const {
    Row o;
    o.valid = r < rows;
    o.off = o.valid ? r * row_stride : 0;
    return o;
  }
  CNNKERN_HD Kc kc(int ki) const {
    Kc c;
    c.valid = ki < k;
    c.k = c.valid ? ki : 0;
    c.off = c.k * k_stride;
    return c;
  }
  template <int V>
  CNNKERN_HD Vec<T, V> load(const Row& r, const Kc& c) const {
    if (!(r.valid && c.valid)) return Vec<T, V>::zeros();
    Vec<T, V> v = Vec<T, V>::load(w + r.off + c.off);
    if (scale.present()) {
#pragma unroll
      for (int j = 0; j < V; ++j) {
        v.v[j] = Num<T>::from_float(Num<T>::to_float(v.v[j]) * scale.at<T>(scale_c0 + c.k + j));
      }
    }
    return v;
  }
  // cp.async route: a plain copy unless each element is scaled.
  CNNKERN_HD bool copyable() const { return !scale.present(); }
  CNNKERN_HD const T* addr(const Row& r, const Kc& c, bool& valid) const {
    valid = r.valid && c.valid;
    return valid ? w + r.off + c.off : w;
  }
};

// Stores C[m = pixel][j] (+ bias, * scale, + shift, ReLU, all on the fp32 accumulator, rounded once)
// at channel map.dest(c0 + j) of y. The input gradient uses it with an identity map and no extras.
template <class T>
struct PointwiseEpilogue {
  T* y;
  Strides4 ys;
  PixelIndex pix;
  ShuffleMap map;
  int c0;
  const T* bias;  // nullptr when absent
  int64_t bias_stride;
  ChannelVec scale, shift;
  bool relu;
  bool m_fast_;

  CNNKERN_HD bool m_fast() const { return m_fast_; }
  CNNKERN_HD void store(int mi, int j, float v) const {
    int n, p, q;
    pix.split(mi, n, p, q);
    const int c = c0 + j;
    if (bias != nullptr) v += Num<T>::to_float(bias[c * bias_stride]);
    if (scale.present()) v *= scale.at<T>(c);
    if (shift.present()) v += shift.at<T>(c);
    if (relu && v < 0.0f) v = 0.0f;  // (NaN stays NaN, as in F.relu)
    y[n * ys.n + map.dest(c) * ys.c + p * ys.h + q * ys.w] = Num<T>::from_float(v);
  }
  // The mainloop's run store: the pixel split once per thread; channels through the map one by one.
  struct Row {
    int64_t off;
  };
  CNNKERN_HD Row row(int mi) const {
    int n, p, q;
    pix.split(mi, n, p, q);
    return Row{n * ys.n + p * ys.h + q * ys.w};
  }
  CNNKERN_HD void store_run(const Row& r, int j0, int count, float (&v)[kEpiRun]) const {
#pragma unroll
    for (int jj = 0; jj < kEpiRun; ++jj) {
      if (jj < count) {
        const int c = c0 + j0 + jj;
        float x = v[jj];
        if (bias != nullptr) x += Num<T>::to_float(bias[c * bias_stride]);
        if (scale.present()) x *= scale.at<T>(c);
        if (shift.present()) x += shift.at<T>(c);
        if (relu && x < 0.0f) x = 0.0f;
        y[r.off + map.dest(c) * ys.c] = Num<T>::from_float(x);
      }
    }
  }
};

// Weight-gradient partial C[j][i] of one (split, group), times the scale of output channel c0 + j
// (the sum over pixels is linear, so scaling the partials scales the total).
template <class T>
struct GpwWgradEpilogue {
  float* part;  // row pitch ld
  int64_t ld;
  ChannelVec scale;
  int c0;

  CNNKERN_HD bool m_fast() const { return false; }
  CNNKERN_HD void store(int j, int i, float v) const {
    if (scale.present()) v *= scale.at<T>(c0 + j);
    part[j * ld + i] = v;
  }
};

}  // namespace cnnkern
