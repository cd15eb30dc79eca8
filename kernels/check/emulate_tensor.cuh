// Host tensors with explicit strides for the kernel emulators (kernels/check/emulate_*.cu): exact-size
// allocations (so AddressSanitizer sees overruns), the layouts the kernels must handle (NCHW,
// channels_last, and sliced/padded views of larger buffers), NaN fill for outputs, and a check that
// nothing outside a view was written.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/numeric.cuh"
#include "conv/conv2d_params.cuh"

namespace cnnkern {
namespace emulate {

enum Layout {
  kNCHW = 0,
  kNHWC = 1,
  kNCHWView = 2,  // NCHW view: channel 1.. of a (c+2)-channel buffer, rows padded by 3
  kNHWCSlice = 3, // NHWC view: channels 1..c of a (c+1)-channel buffer (misaligned, odd strides)
  kNHWCPadded = 4 // NHWC view: channels 8..c+7 of a (c+8)-channel buffer (aligned, strided)
};
inline const char* layout_name(int l) {
  static const char* names[] = {"nchw", "nhwc", "nchw_view", "nhwc_slice", "nhwc_padded"};
  return names[l];
}

template <class T>
struct Tensor4 {
  int d[4];
  Strides4 st{};
  T* base = nullptr;
  size_t alloc = 0;
  T* ptr = nullptr;
  std::vector<char> inside;  // which buffer elements belong to the view

  Tensor4(int a, int b, int c, int e, int layout) : d{a, b, c, e} {
    int64_t base_off = 0;
    switch (layout) {
      case kNHWC:
        st = Strides4{int64_t(b) * c * e, 1, int64_t(e) * b, b};
        alloc = size_t(a) * b * c * e;
        break;
      case kNCHWView: {
        const int64_t wp = e + 3, cp = b + 2;
        st = Strides4{cp * c * wp, int64_t(c) * wp, wp, 1};
        alloc = size_t(a) * cp * c * wp;
        base_off = st.c;
        break;
      }
      case kNHWCSlice:
      case kNHWCPadded: {  // the view starts `lead` channels into each pixel's channel run
        const int64_t lead = layout == kNHWCSlice ? 1 : 8, cp = b + lead;
        st = Strides4{cp * c * e, 1, cp * e, cp};
        alloc = size_t(a) * cp * c * e;
        base_off = lead;
        break;
      }
      default:
        st = Strides4{int64_t(b) * c * e, int64_t(c) * e, e, 1};
        alloc = size_t(a) * b * c * e;
    }
    if (alloc == 0) alloc = 1;
    void* mem = nullptr;
    // Exact size (ASan puts its redzone right after), 16-byte aligned like a CUDA allocation.
    if (posix_memalign(&mem, 16, alloc * sizeof(T)) != 0) std::abort();
    base = static_cast<T*>(mem);
    for (size_t i = 0; i < alloc; ++i) base[i] = Num<T>::from_float(1e6f);
    ptr = base + base_off;
    inside.assign(alloc, 0);
    each([&](int i, int j, int k, int l) { inside[size_t(base_off + off(i, j, k, l))] = 1; });
  }
  ~Tensor4() { std::free(base); }
  Tensor4(const Tensor4&) = delete;
  Tensor4& operator=(const Tensor4&) = delete;

  int64_t off(int i, int j, int k, int l) const { return i * st.n + j * st.c + k * st.h + l * st.w; }
  T& at(int i, int j, int k, int l) { return ptr[off(i, j, k, l)]; }
  float get(int i, int j, int k, int l) const { return Num<T>::to_float(ptr[off(i, j, k, l)]); }
  int64_t numel() const { return int64_t(d[0]) * d[1] * d[2] * d[3]; }
  template <class F>
  void each(F f) {
    for (int i = 0; i < d[0]; ++i)
      for (int j = 0; j < d[1]; ++j)
        for (int k = 0; k < d[2]; ++k)
          for (int l = 0; l < d[3]; ++l) f(i, j, k, l);
  }
  void fill_random(std::mt19937& rng) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    each([&](int i, int j, int k, int l) { at(i, j, k, l) = Num<T>::from_float(u(rng)); });
  }
  void fill_nan() {
    each([&](int i, int j, int k, int l) { at(i, j, k, l) = Num<T>::from_float(NAN); });
  }
  // Elements of the buffer outside the view must keep their sentinel.
  int clobbered() const {
    int bad = 0;
    for (size_t i = 0; i < alloc; ++i)
      if (!inside[i] && Num<T>::to_float(base[i]) != Num<T>::to_float(Num<T>::from_float(1e6f))) ++bad;
    return bad;
  }
  // Same predicates as csrc/cuda/depthwise_conv2d.cpp (on sizes/strides/pointer instead of at::Tensor).
  int64_t pixel_step() const { return d[3] > 1 ? st.w : (d[2] > 1 ? st.h : st.n); }
  bool channels_fast() const { return d[1] > 1 && st.c < pixel_step(); }
  bool vec_ok(int64_t v) const {
    if (d[1] > 1 && st.c != 1) return false;
    const int64_t s[3] = {st.n, st.h, st.w};
    const int dims[3] = {d[0], d[2], d[3]};
    for (int i = 0; i < 3; ++i)
      if (dims[i] > 1 && s[i] % v != 0) return false;
    return reinterpret_cast<uintptr_t>(ptr) % (v * sizeof(T)) == 0;
  }
};

}  // namespace emulate
}  // namespace cnnkern
