// Channel permutation copy through a ShuffleMap: channel shuffle, the passthrough half of a shuffled
// concat, and their inverses.
//   scatter: dst[n, map.dest(c), p, q] = src[n, c, p, q]   for c < channels
//   gather:  dst[n, c, p, q] = src[n, map.dest(c), p, q]   for c < channels
// Both tensors are read and written through their own strides. A pure copy, so the kernel works on
// raw storage words (E = uint16_t / uint32_t by element size) and moves V of them at a time along the
// contiguous dimension:
//   kPixelFast   one channel, V consecutive pixels (NCHW-like: src and dst planes both contiguous)
//   !kPixelFast  one pixel, V consecutive channels of the unpermuted side (NHWC-like); the permuted
//                side is accessed element by element (its channels are map.groups apart)
#pragma once

#include <cstdint>

#include "common/fastdiv.cuh"
#include "conv/conv2d_index.cuh"
#include "conv/conv2d_params.cuh"
#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

template <class E, int V>
struct alignas(sizeof(E) * V) Words {
  E v[V];
};

template <class E>
struct ChannelShuffleParams {
  const E* src;
  Strides4 ss;
  E* dst;
  Strides4 ds;
  int pixels;    // N*H*W
  int channels;  // of the unpermuted side
  bool scatter;
  PixelIndex pix;
  ShuffleMap map;
  FastDivmod div_inner;  // by the per-item inner extent: pixels / V (pixel-fast) or channels / V
  int64_t items;         // channels * pixels / V
};

template <class E, int V, bool kPixelFast>
struct ChannelShuffleBody {
  // Item e: (channel c, pixels m..m+V-1) or (pixel m, channels c..c+V-1).
  CNNKERN_HD static void run(const ChannelShuffleParams<E>& p, int64_t e) {
    uint32_t outer, inner;
    p.div_inner.divmod(static_cast<uint32_t>(e), outer, inner);
    const int c = kPixelFast ? static_cast<int>(outer) : static_cast<int>(inner) * V;
    const int m = kPixelFast ? static_cast<int>(inner) * V : static_cast<int>(outer);
    int n, y, x;
    p.pix.split(m, n, y, x);
    const int64_t src_pix = n * p.ss.n + y * p.ss.h + x * p.ss.w;
    const int64_t dst_pix = n * p.ds.n + y * p.ds.h + x * p.ds.w;
    if constexpr (kPixelFast) {
      const int mapped = p.map.dest(c);
      const int sc = p.scatter ? c : mapped;
      const int dc = p.scatter ? mapped : c;
      // V pixels of one plane are V consecutive elements (host-checked for V > 1).
      *reinterpret_cast<Words<E, V>*>(p.dst + dst_pix + dc * p.ds.c) =
          *reinterpret_cast<const Words<E, V>*>(p.src + src_pix + sc * p.ss.c);
    } else if (p.scatter) {
      const Words<E, V> w = *reinterpret_cast<const Words<E, V>*>(p.src + src_pix + c * p.ss.c);
#pragma unroll
      for (int j = 0; j < V; ++j) p.dst[dst_pix + p.map.dest(c + j) * p.ds.c] = w.v[j];
    } else {
      Words<E, V> w;
#pragma unroll
      for (int j = 0; j < V; ++j) w.v[j] = p.src[src_pix + p.map.dest(c + j) * p.ss.c];
      *reinterpret_cast<Words<E, V>*>(p.dst + dst_pix + c * p.ds.c) = w;
    }
  }
};

// The kernel variant for a problem: the mapping follows src's contiguous dimension; vectors of 16
// bytes where every stride that matters is a multiple of the vector, the bases are aligned and the
// vectors never straddle a plane or a pixel. Shared by csrc/ and the emulator.
struct ChannelShufflePlan {
  int vec;
  bool pixel_fast;
};

__host__ inline ChannelShufflePlan plan_channel_shuffle(int n, int h, int w, int channels, const Strides4& ss,
                                                        const void* src, const Strides4& ds, const void* dst,
                                                        int elem_bytes, bool scatter) {
  const int64_t src_pixel_step = w > 1 ? ss.w : (h > 1 ? ss.h : ss.n);
  const bool pixel_fast = !(channels > 1 && ss.c < src_pixel_step);
  const int v = 16 / elem_bytes;
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  auto mult = [&](int extent, int64_t stride) { return extent <= 1 || stride % v == 0; };
  bool ok;
  if (pixel_fast) {
    auto plane = [&](const Strides4& s) {
      return (w == 1 || s.w == 1) && (h == 1 || s.h == w) && mult(n, s.n) && s.c % v == 0;
    };
    ok = int64_t{h} * w % v == 0 && plane(ss) && plane(ds) && aligned(src) && aligned(dst);
  } else {
    const Strides4& u = scatter ? ss : ds;  // the side whose channels are not permuted
    ok = channels % v == 0 && u.c == 1 && mult(n, u.n) && mult(h, u.h) && mult(w, u.w) &&
         aligned(scatter ? src : dst);
  }
  return ChannelShufflePlan{ok ? v : 1, pixel_fast};
}

template <class E, int V, bool kPixelFast>
__global__ void __launch_bounds__(256) channel_shuffle_kernel(const ChannelShuffleParams<E> p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < p.items; e += step) {
    ChannelShuffleBody<E, V, kPixelFast>::run(p, e);
  }
}

}  // namespace cnnkern
