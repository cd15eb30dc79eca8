// Index decompositions shared by the conv2d problem policies. All GEMM indices are < 2^31 (the host
// checks every extent), so 32-bit FastDivmod is exact; memory offsets are always formed in int64.
#pragma once

#include <cstdint>

#include "common/fastdiv.cuh"
#include "conv/conv2d_params.cuh"

namespace cnnkern {

// Pixel index m = (n * H + y) * W + x  <->  (n, y, x).
struct PixelIndex {
  FastDivmod div_w;
  FastDivmod div_h;

  PixelIndex() = default;
  __host__ PixelIndex(int h, int w) : div_w(static_cast<uint32_t>(w)), div_h(static_cast<uint32_t>(h)) {}

  CNNKERN_HD void split(int m, int& n, int& y, int& x) const {
    uint32_t t, xx, nn, yy;
    div_w.divmod(static_cast<uint32_t>(m), t, xx);
    div_h.divmod(t, nn, yy);
    n = static_cast<int>(nn);
    y = static_cast<int>(yy);
    x = static_cast<int>(xx);
  }
};

// The gathers' bounds test: the address of x at (image and channel offset `off`, row ih, column iw) and whether
// it is inside the image and the GEMM (`in`); outside, the base pointer (cp.async zero-fills, never reads it).
template <class T>
CNNKERN_HD const T* gather_addr(const T* x, const Strides4& xs, int h, int w, int64_t off, int ih, int iw, bool in,
                                bool& valid) {
  valid = in && static_cast<unsigned>(ih) < static_cast<unsigned>(h) &&
          static_cast<unsigned>(iw) < static_cast<unsigned>(w);
  return valid ? x + off + ih * xs.h + iw * xs.w : x;
}

// Reduction index over filter taps and channels, taps outer and channel inner:
// k = (r * KW + s) * C + c  <->  (r, s, c). With channel-contiguous tensors a run of k is contiguous.
struct TapChannelIndex {
  FastDivmod div_c;
  FastDivmod div_kw;

  TapChannelIndex() = default;
  __host__ TapChannelIndex(int channels, int kw)
      : div_c(static_cast<uint32_t>(channels)), div_kw(static_cast<uint32_t>(kw)) {}

  CNNKERN_HD void split(int k, int& r, int& s, int& c) const {
    uint32_t rs, cc, rr, ss;
    div_c.divmod(static_cast<uint32_t>(k), rs, cc);
    div_kw.divmod(rs, rr, ss);
    r = static_cast<int>(rr);
    s = static_cast<int>(ss);
    c = static_cast<int>(cc);
  }
};

}  // namespace cnnkern
