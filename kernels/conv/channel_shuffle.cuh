// Channel permutation copy through a ShuffleMap: channel shuffle, the passthrough half of a shuffled
// concat, and their inverses.
//   scatter: dst[n, map.dest(c), p, q] = src[n, c, p, q]   for c < channels
//   gather:  dst[n, c, p, q] = src[n, map.dest(c), p, q]   for c < channels
// A pure copy, so the kernels work on raw storage words (E = uint16_t / uint32_t by element size).
//
// Two kernels; plan_channel_shuffle (shared by csrc/ and the emulator) picks:
//   channel_shuffle_tile_kernel   both tensors dense channels-fast (NHWC with pixel stride = channel
//       count) and 16-byte aligned. Then the P pixels of a tile are one contiguous run of P*C words on
//       each side whatever C % 8 is, so a CTA moves both runs with 16-byte loads and stores and
//       permutes the words in shared memory through a per-CTA offset table. See
//       kernels/conv/channel_shuffle.md for the model.
//   channel_shuffle_kernel (generic)  any strides. Each tensor is read and written through its own
//       strides, V words at a time along the contiguous dimension:
//         kPixelFast   one channel, V consecutive pixels (NCHW-like: src and dst planes both contiguous)
//         !kPixelFast  one pixel, V consecutive channels of the unpermuted side (NHWC-like); the
//                      permuted side is accessed element by element (its channels are map.groups apart)
#pragma once

#include <cstdint>
#include <cstring>

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
  // Pixel-fast with V > 1 only: planes are contiguous on both sides (plan_channel_shuffle checks it), so a
  // pixel's offset is n * stride_n + (m mod H*W): one divmod by H*W instead of PixelIndex's two.
  FastDivmod div_hw{};
  // ChannelShuffleFillBody only (set by make_channel_shuffle_fill): the permuted side's channel count
  // and the map's groups (as a divisor), per_group = total / groups and channel offset.
  int total = 0;
  FastDivmod div_groups{};
  int per_group = 0;
  int offset = 0;
  // groups == 2 and the source is exactly one half (channels == per_group, offset 0 or per_group) with unit
  // channel stride and pixel offsets / base aligned to V / 2 words: the V / 2 owned words of a Q vector are
  // V / 2 consecutive source channels, read with one access (ChannelShuffleFillBody).
  bool half_run = false;
  // Both sides' pixels evenly strided (pixel m at m * src_ps / m * dst_ps words: dense channels-last, or its
  // x.chunk(2, 1) half): a Q vector's pixel offsets need no split into (n, y, x), whose two divisions and
  // six 64-bit products were ~2/3 of the fill body's instructions (SASS: kernels/conv/channel_shuffle.md).
  bool linear_pix = false;
  int64_t src_ps = 0, dst_ps = 0;
};

// Whether pixel (n, y, x) of an n x h x w grid is at (n*h*w + y*w + x) * ps words; ps returned.
__host__ inline bool channel_shuffle_linear_pixels(const Strides4& s, int n, int h, int w, int64_t& ps) {
  ps = w > 1 ? s.w : (h > 1 ? s.h : s.n);
  return (w <= 1 || s.w == ps) && (h <= 1 || s.h == int64_t{w} * ps) && (n <= 1 || s.n == int64_t{h} * w * ps);
}

template <class E, int V, bool kPixelFast>
struct ChannelShuffleBody {
  // Item e: (channel c, pixels m..m+V-1) or (pixel m, channels c..c+V-1).
  CNNKERN_HD static void run(const ChannelShuffleParams<E>& p, int64_t e) {
    uint32_t outer, inner;
    p.div_inner.divmod(static_cast<uint32_t>(e), outer, inner);
    const int c = kPixelFast ? static_cast<int>(outer) : static_cast<int>(inner) * V;
    const int m = kPixelFast ? static_cast<int>(inner) * V : static_cast<int>(outer);
    int64_t src_pix, dst_pix;
    if constexpr (kPixelFast && V > 1) {
      uint32_t n, r;
      p.div_hw.divmod(static_cast<uint32_t>(m), n, r);
      src_pix = n * p.ss.n + r;
      dst_pix = n * p.ds.n + r;
    } else {
      int n, y, x;
      p.pix.split(m, n, y, x);
      src_pix = n * p.ss.n + y * p.ss.h + x * p.ss.w;
      dst_pix = n * p.ds.n + y * p.ds.h + x * p.ds.w;
    }
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

// Scatter of a shuffle-cat half (channels < total) whose other channels are scratch: a kernel launched
// after this one writes every one of them (shuffle_cat_pointwise: the conv branch's GEMM, on the same
// stream). Item e = (pixel m, Q vector j): the V consecutive channels q = jV .. jV + V - 1 of the permuted
// side, each taken from its source channel c = inv(q) when c is ours, else 0 (overwritten later), and
// stored as ONE 16-byte vector instead of V scattered 2-byte stores. inv(q) =
// (q % groups) * per_group + q / groups - offset, stepped word by word from one divmod per vector. The
// source side may have any strides (x.chunk(2, 1) of a channels_last tensor is not dense): its reads are
// single words, consecutive lanes reading neighbouring channels of a pixel.
// kG: the map's groups when known at compile time (2: every ShuffleNetV2 shuffle), else 0 (runtime).
template <class E, int V, int kG = 0>
struct ChannelShuffleFillBody {
  CNNKERN_HD static void run(const ChannelShuffleParams<E>& p, int64_t e) {
    uint32_t m, j;
    p.div_inner.divmod(static_cast<uint32_t>(e), m, j);
    int64_t src_pix, dst_pix;
    if (p.linear_pix) {
      src_pix = int64_t{m} * p.src_ps;
      dst_pix = int64_t{m} * p.dst_ps;
    } else {
      int n, y, x;
      p.pix.split(static_cast<int>(m), n, y, x);
      src_pix = n * p.ss.n + y * p.ss.h + x * p.ss.w;
      dst_pix = n * p.ds.n + y * p.ds.h + x * p.ds.w;
    }
    const E* src = p.src + src_pix;
    E* dst = p.dst + dst_pix + j * V;
    const int sc = static_cast<int>(p.ss.c);  // channels * |ss.c| < 2^31: checked by the plan
    Words<E, V> w;
    if constexpr (kG == 2) {
      if (p.half_run) {
        // Word i of Q vector j is channel jV / 2 + i / 2 of the even (offset 0) or odd (offset per_group)
        // half: ours are every other word, V / 2 consecutive source channels from jV / 2.
        const Words<E, V / 2> h = *reinterpret_cast<const Words<E, V / 2>*>(src + static_cast<int>(j) * (V / 2));
        const int odd = p.offset != 0;
#pragma unroll
        for (int i = 0; i < V; ++i) w.v[i] = (i & 1) == odd ? h.v[i / 2] : E{0};
        *reinterpret_cast<Words<E, V>*>(dst) = w;
        return;
      }
      // q = jV + i with jV even: q % 2 = i % 2 and q / 2 = jV / 2 + i / 2, so word i reads channel
      // jV / 2 + i / 2 - offset, plus per_group for odd i; no division or wrap per word.
      // Every word is loaded, the others from the pixel's channel 0 and then zeroed: a load under a
      // condition compiled to a branch around each one (238 instructions per vector; 150 this way, at 34
      // registers).
      const int c0 = static_cast<int>(j) * (V / 2) - p.offset;
      E raw[V];
      bool ours[V];
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const int c = c0 + i / 2 + (i % 2 ? p.per_group : 0);
        ours[i] = static_cast<unsigned>(c) < static_cast<unsigned>(p.channels);
        raw[i] = src[(ours[i] ? c : 0) * sc];
      }
#pragma unroll
      for (int i = 0; i < V; ++i) w.v[i] = ours[i] ? raw[i] : E{0};
    } else {
      uint32_t s, r;  // q = s * groups + r
      p.div_groups.divmod(j * V, s, r);
      const int groups = static_cast<int>(p.div_groups.divisor);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const int c = static_cast<int>(r) * p.per_group + static_cast<int>(s) - p.offset;
        const bool ours = c >= 0 && c < p.channels;
        w.v[i] = ours ? src[c * sc] : E{0};  // a predicated load: the other words are never read
        if (++r == static_cast<uint32_t>(groups)) {
          r = 0;
          ++s;
        }
      }
    }
    *reinterpret_cast<Words<E, V>*>(dst) = w;
  }
};

// ---- the tiled channels-fast kernel -----------------------------------------------------------
//
// Two sides: U, the unpermuted tensor (C = channels words per pixel), and Q, the permuted one
// (T = total words per pixel; C < T for a shuffle-cat half). Scatter copies U -> Q, gather Q -> U.
// Per tile of P pixels [m0, m0 + P) the U run is U[m0 * C, (m0 + P) * C) and the Q run
// Q[m0 * T, (m0 + P) * T). P is a multiple of V, so every run starts 16-byte aligned; only the
// tensor's last tile can end inside a vector (its tail words are copied one by one).
//
// Q word k of a run (pixel k / T, channel q = k % T) pairs with U word (k / T) * C + inv(q), inv(q)
// the c < C with map.dest(c) = q (none for the other half of a concat). That offset is periodic in k
// with period L = lcm(T, V) words (L / T pixels): table[r] = ((r / T) * C + inv(r % T)) * sizeof(E)
// for r < L, a byte offset into the U run (kNoSource where there is no c). So Q vector k = u * L + r
// (r a multiple of V) reads its V offsets with one aligned shared load and adds u * (L / T) * C
// words: one fastdivmod per 16-byte vector, none per word. The U run lives in shared memory; the Q
// run streams through registers with 16-byte accesses:
//   scatter: load U run (16-byte loads, linear) | store Q run: per Q vector, V words gathered from
//            shared memory, one 16-byte store
//   gather:  load Q run: per Q vector, one 16-byte load, V words scattered into shared memory |
//            store U run (linear 16-byte shared loads and global stores)
// Either way the permuting shared accesses are made by lanes holding consecutive Q vectors, which is
// the 2-way bank pattern of kernels/conv/channel_shuffle.md (permuting on the U side instead, as a
// first version did for gather, gave 4-8 way). kMasked (C < T): table entries may be kNoSource; a
// scatter then stores word by word (the other half of each vector belongs to another kernel), a
// gather skips the words nobody takes.
//
// Shared memory: the U run (P * C words), then the table. Per CTA <= 48 KB (the plan checks), 256
// threads, <= 32 registers (launch bounds): 8 CTAs per SM for runs up to ~27 KB, which the plan's 16 KB
// run target keeps. Bank conflicts and the time model: kernels/conv/channel_shuffle.md.
template <class E>
struct ChannelShuffleTileParams {
  const E* src;
  E* dst;
  int pixels;
  int tile_pixels;   // P, a multiple of V
  int tiles;         // ceil(pixels / P)
  int channels;      // C: words per pixel on the U side
  int total;         // T: words per pixel on the Q side
  int period;        // L = lcm(T, V): table entries
  int period_bytes;  // (L / T) * C * sizeof(E): U bytes per period
  FastDivmod div_period;
  int table_offset;  // bytes from the shared-memory base to the table (16-byte aligned, after the U run)
  int groups;        // of the map: inv(q) = (q % groups) * per_group + q / groups - offset
  int per_group;     // total / groups
  int offset;
  bool fill;         // scatter of a shuffle-cat half whose other channels are scratch (plan.fill): the
                     // table points their words at a filler (the period's first U word) instead of
                     // kNoSource, so that the unmasked kernel stores whole 16-byte vectors
};

constexpr uint16_t kNoSource = 0xffff;

template <class E, bool kMasked, bool kGather>
struct ChannelShuffleTile {
  static constexpr int V = 16 / static_cast<int>(sizeof(E));
  static constexpr int kThreads = 256;
  static constexpr int kLoadBatch = 4;  // 16-byte loads a thread has in flight before using them
  using Vec = Words<E, V>;
  using Offsets = Words<uint16_t, V>;

  // Once per CTA (real divisions: L <= 8 * T entries over 256 threads).
  CNNKERN_HD static void build_table(const ChannelShuffleTileParams<E>& p, unsigned char* smem, int tid) {
    uint16_t* table = reinterpret_cast<uint16_t*>(smem + p.table_offset);
    for (int r = tid; r < p.period; r += kThreads) {
      const int px = r / p.total, q = r - px * p.total;
      const int c = (q % p.groups) * p.per_group + q / p.groups - p.offset;  // inverse of dest's transpose
      // The filler of plan.fill, offset 0 from the period's base, is a word the tile has loaded: the
      // period's first pixel is at or before the pixel of every Q word that uses the entry.
      table[r] = c < 0 || c >= p.channels ? (p.fill ? uint16_t{0} : kNoSource)
                                          : static_cast<uint16_t>((px * p.channels + c) * static_cast<int>(sizeof(E)));
    }
  }

  CNNKERN_HD static int pixels_in(const ChannelShuffleTileParams<E>& p, int tile) {
    const int m0 = tile * p.tile_pixels;
    return p.pixels - m0 < p.tile_pixels ? p.pixels - m0 : p.tile_pixels;
  }

  // U-side byte address in shared memory of Q word k's partner (k in the run), or nullptr.
  CNNKERN_HD static unsigned char* partner(const ChannelShuffleTileParams<E>& p, unsigned char* smem, int k) {
    uint32_t u, r;
    p.div_period.divmod(static_cast<uint32_t>(k), u, r);
    const uint16_t o = reinterpret_cast<const uint16_t*>(smem + p.table_offset)[r];
    return kMasked && o == kNoSource ? nullptr : smem + static_cast<int>(u) * p.period_bytes + o;
  }

  // Phase 1, before the barrier.
  CNNKERN_HD static void load(const ChannelShuffleTileParams<E>& p, unsigned char* smem, int tile, int tid) {
    const int pix = pixels_in(p, tile);
    const int width = kGather ? p.total : p.channels;
    const int words = pix * width, vecs = words / V;
    const E* __restrict__ in = p.src + tile * p.tile_pixels * width;
    // Moved as uint4, not Words<E, V>: a conditionally assigned array of 16-bit words makes the
    // compiler merge halves with PRMT (about 12 per vector); 32-bit lanes are copied as they are.
    const uint4* __restrict__ in_v = reinterpret_cast<const uint4*>(in);
    // The last tile of the tensor may end inside a vector: its tail words first, one by one.
    const int k = vecs * V + tid;
    if (k < words) {
      if constexpr (kGather) {
        if (unsigned char* d = partner(p, smem, k)) *reinterpret_cast<E*>(d) = in[k];
      } else {
        reinterpret_cast<E*>(smem)[k] = in[k];
      }
    }
#pragma unroll 1
    for (int i0 = tid; i0 < vecs; i0 += kLoadBatch * kThreads) {
      uint4 r[kLoadBatch];
#pragma unroll
      for (int b = 0; b < kLoadBatch; ++b)
        if (i0 + b * kThreads < vecs) r[b] = in_v[i0 + b * kThreads];
#pragma unroll
      for (int b = 0; b < kLoadBatch; ++b) {
        const int i = i0 + b * kThreads;
        if (i >= vecs) continue;
        if constexpr (kGather) {
          uint32_t u, rr;
          p.div_period.divmod(static_cast<uint32_t>(i * V), u, rr);
          unsigned char* base = smem + static_cast<int>(u) * p.period_bytes;
          const Offsets t = *reinterpret_cast<const Offsets*>(smem + p.table_offset + 2 * rr);
          Vec w;
          static_assert(sizeof(Vec) == sizeof(uint4), "one vector is 16 bytes");
          memcpy(&w, &r[b], sizeof(Vec));
#pragma unroll
          for (int j = 0; j < V; ++j)
            if (!kMasked || t.v[j] != kNoSource) *reinterpret_cast<E*>(base + t.v[j]) = w.v[j];
        } else {
          reinterpret_cast<uint4*>(smem)[i] = r[b];
        }
      }
    }
  }

  // Phase 2, after the barrier.
  CNNKERN_HD static void store(const ChannelShuffleTileParams<E>& p, unsigned char* smem, int tile, int tid) {
    const int pix = pixels_in(p, tile);
    const int width = kGather ? p.channels : p.total;
    const int words = pix * width, vecs = words / V;
    E* __restrict__ out = p.dst + tile * p.tile_pixels * width;
    const int k = vecs * V + tid;  // tail first, as in load()
    if (k < words) {
      if constexpr (kGather) {
        out[k] = reinterpret_cast<const E*>(smem)[k];
      } else {
        if (const unsigned char* s = partner(p, smem, k)) out[k] = *reinterpret_cast<const E*>(s);
      }
    }
    if constexpr (kGather) {
#pragma unroll 4
      for (int i = tid; i < vecs; i += kThreads) reinterpret_cast<uint4*>(out)[i] = reinterpret_cast<const uint4*>(smem)[i];
    } else {
      // Not unrolled: the 32-register budget holds one vector's offsets, words and addresses at a time
      // (unrolled, ptxas spilled); the loads of consecutive iterations are independent anyway.
#pragma unroll 1
      for (int i = tid; i < vecs; i += kThreads) {
        uint32_t u, r;
        p.div_period.divmod(static_cast<uint32_t>(i * V), u, r);
        const unsigned char* base = smem + static_cast<int>(u) * p.period_bytes;
        const Offsets t = *reinterpret_cast<const Offsets*>(smem + p.table_offset + 2 * r);
        if constexpr (!kMasked) {
          Vec w;
#pragma unroll
          for (int j = 0; j < V; ++j) w.v[j] = *reinterpret_cast<const E*>(base + t.v[j]);
          reinterpret_cast<Vec*>(out)[i] = w;
        } else {
          // Word by word: the map's image interleaves with the channels another kernel writes
          // (groups = 2: every other one), so a 16-byte vector is almost never all ours.
#pragma unroll
          for (int j = 0; j < V; ++j)
            if (t.v[j] != kNoSource) out[i * V + j] = *reinterpret_cast<const E*>(base + t.v[j]);
        }
      }
    }
  }
};

// (256, 8): at most 32 registers, so that 8 CTAs fit an SM; the persistent grid is sized for that.
template <class E, bool kMasked, bool kGather>
__global__ void __launch_bounds__(256, 8) channel_shuffle_tile_kernel(const ChannelShuffleTileParams<E> p) {
  using Tile = ChannelShuffleTile<E, kMasked, kGather>;
  extern __shared__ __align__(16) unsigned char channel_shuffle_smem[];
  Tile::build_table(p, channel_shuffle_smem, threadIdx.x);
  for (int tile = blockIdx.x; tile < p.tiles; tile += gridDim.x) {
    __syncthreads();  // the previous tile's run is no longer read
    Tile::load(p, channel_shuffle_smem, tile, threadIdx.x);
    __syncthreads();  // the run (and, on the first tile, the table) is complete
    Tile::store(p, channel_shuffle_smem, tile, threadIdx.x);
  }
}

// ---- plan ------------------------------------------------------------------------------------
//
// Shared by csrc/ and the emulator. The tiled kernel when both tensors are dense channels-fast
// (channel stride 1, pixel stride = channel count, rows and images packed: pixel m at word m * C),
// both 16-byte aligned, every run offset fits int32, the table's byte offsets fit 16 bits and the
// shared memory fits 48 KB; otherwise the generic kernel, mapped along src's contiguous dimension, with
// 16-byte vectors where every stride that matters is a multiple of the vector, the bases are aligned
// and the vectors never straddle a plane or a pixel.
struct ChannelShufflePlan {
  int vec;           // generic kernel: words per access (1 or 16 / elem_bytes)
  bool pixel_fast;   // generic kernel: the mapping
  bool tiled;        // the tiled kernel instead of the generic one
  bool masked;       // tiled: channels < total (a shuffle-cat half) and not fill
  // fill (scatter of a shuffle-cat half, requested by the caller when a later kernel writes every other
  // channel): the permuted side is stored in whole 16-byte vectors, the other channels' words with filler.
  // Tiled: the unmasked kernel with a filler table. Generic: ChannelShuffleFillBody (vec = its words per
  // vector) when the permuted side has unit channel stride, total % vec == 0, vector-multiple pixel strides
  // and an aligned base, for 16-byte vectors or else 8-byte ones; otherwise the word-by-word kernels (fill
  // false).
  bool fill;
  int tile_pixels;   // tiled: P
  int period;        // tiled: L = lcm(total, V)
  int table_offset;  // tiled: bytes before the offset table
  int smem_bytes;    // tiled: dynamic shared memory per CTA
};

struct ChannelShuffleTileLimits {
  static constexpr int kRunBytes = 16384;       // a tile's Q run: 4 loads or stores of 16 B per thread
  static constexpr int kMinTiles = 1056;        // 132 SMs x 8 CTAs: shrink P before leaving SMs idle
  static constexpr int kSmemBytes = 48 * 1024;  // no opt-in attribute needed
};

__host__ inline int channel_shuffle_gcd(int a, int b) {
  while (b) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// The tiled part of the plan (plan.tiled false when it does not apply). tile_pixels > 0 forces P
// (a multiple of V; the emulator uses it to move tile boundaries).
__host__ inline void plan_channel_shuffle_tile(ChannelShufflePlan& plan, int n, int h, int w, int channels,
                                               int total, const Strides4& ss, const void* src, const Strides4& ds,
                                               const void* dst, int elem_bytes, bool scatter, int tile_pixels = 0) {
  plan.tiled = false;
  const int v = 16 / elem_bytes;
  auto dense = [&](const Strides4& s, int c) {
    return (c == 1 || s.c == 1) && (w == 1 || s.w == c) && (h == 1 || s.h == int64_t{w} * c) &&
           (n == 1 || s.n == int64_t{h} * w * c);
  };
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  const int64_t pixels = int64_t{n} * h * w;
  const Strides4& us = scatter ? ss : ds;  // the unpermuted side
  const Strides4& qs = scatter ? ds : ss;
  if (pixels == 0 || channels == 0 || !dense(us, channels) || !dense(qs, total) || !aligned(src) || !aligned(dst))
    return;
  if (pixels * total + 16 > INT32_MAX) return;  // run offsets and word indices in int32 (total >= channels)
  const int period = total / channel_shuffle_gcd(total, v) * v;
  const int64_t period_bytes = int64_t{period / total} * channels * elem_bytes;
  if (period_bytes >= kNoSource) return;  // table entries are 16-bit byte offsets
  int p = tile_pixels;
  if (p <= 0) {
    p = ChannelShuffleTileLimits::kRunBytes / (total * elem_bytes) / v * v;
    const int64_t spread = (pixels + ChannelShuffleTileLimits::kMinTiles - 1) / ChannelShuffleTileLimits::kMinTiles;
    const int64_t spread_v = (spread + v - 1) / v * v;
    if (spread_v < p) p = static_cast<int>(spread_v);
    if (p < v) p = v;
  }
  const int64_t run_bytes = (int64_t{p} * channels * elem_bytes + 15) / 16 * 16;
  const int64_t smem = run_bytes + (int64_t{period} * 2 + 15) / 16 * 16;
  if (smem > ChannelShuffleTileLimits::kSmemBytes) return;
  plan.tiled = true;
  plan.masked = channels < total && !plan.fill;
  plan.tile_pixels = p;
  plan.period = period;
  plan.table_offset = static_cast<int>(run_bytes);
  plan.smem_bytes = static_cast<int>(smem);
}

// fill: the caller allows the permuted side's other channels to be overwritten (see ChannelShufflePlan).
__host__ inline ChannelShufflePlan plan_channel_shuffle(int n, int h, int w, int channels, int total,
                                                        const Strides4& ss, const void* src, const Strides4& ds,
                                                        const void* dst, int elem_bytes, bool scatter,
                                                        bool fill = false) {
  ChannelShufflePlan plan{};
  plan.fill = fill && scatter && channels < total;
  plan_channel_shuffle_tile(plan, n, h, w, channels, total, ss, src, ds, dst, elem_bytes, scatter);
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
  plan.vec = ok ? v : 1;
  plan.pixel_fast = pixel_fast;
  if (plan.fill && !plan.tiled) {
    // Q vectors of 16 bytes, else 8 (a permuted side of 116 16-bit channels: 14.5 16-byte vectors a pixel).
    auto fits = [&](int fv) {
      auto qmult = [&](int extent, int64_t stride) { return extent <= 1 || stride % fv == 0; };
      return fv >= 2 && ds.c == 1 && total % fv == 0 && qmult(n, ds.n) && qmult(h, ds.h) && qmult(w, ds.w) &&
             reinterpret_cast<uintptr_t>(dst) % (fv * elem_bytes) == 0 &&
             int64_t{n} * h * w * (total / fv) < INT32_MAX && int64_t{channels} * (ss.c < 0 ? -ss.c : ss.c) < INT32_MAX;
    };
    const int fv = fits(v) ? v : (fits(v / 2) ? v / 2 : 0);
    plan.fill = fv > 0;
    if (plan.fill) plan.vec = fv;
  }
  return plan;
}

// The generic kernel's parameters for ChannelShuffleBody (neither plan.tiled nor plan.fill).
template <class E>
__host__ inline ChannelShuffleParams<E> make_channel_shuffle_params(const ChannelShufflePlan& plan, const E* src,
                                                                    const Strides4& ss, E* dst, const Strides4& ds,
                                                                    int n, int h, int w, int channels, int total,
                                                                    int groups, int offset, bool scatter) {
  const int pixels = n * h * w;
  const int inner = plan.pixel_fast ? pixels / plan.vec : channels / plan.vec;
  ChannelShuffleParams<E> p{src,     ss,      dst, ds, pixels, channels, scatter, PixelIndex(h, w),
                            ShuffleMap(total, groups, offset), FastDivmod(static_cast<uint32_t>(inner)),
                            int64_t{channels} * pixels / plan.vec};
  p.div_hw = FastDivmod(static_cast<uint32_t>(h * w));
  return p;
}

// The generic kernel's parameters for ChannelShuffleFillBody (plan.fill && !plan.tiled).
template <class E>
__host__ inline ChannelShuffleParams<E> make_channel_shuffle_fill(const E* src, const Strides4& ss, E* dst,
                                                                  const Strides4& ds, int n, int h, int w,
                                                                  int channels, int total, int groups, int offset,
                                                                  int V) {
  const int pixels = n * h * w;
  ChannelShuffleParams<E> p{src, ss, dst, ds, pixels, channels, true, PixelIndex(h, w),
                            ShuffleMap(total, groups, offset), FastDivmod(static_cast<uint32_t>(total / V)),
                            int64_t{pixels} * (total / V)};
  p.total = total;
  p.div_groups = FastDivmod(static_cast<uint32_t>(groups));
  p.per_group = total / groups;
  p.offset = offset;
  const int half = V / 2;
  auto hmult = [&](int extent, int64_t stride) { return extent <= 1 || stride % half == 0; };
  p.half_run = groups == 2 && channels == p.per_group && (offset == 0 || offset == p.per_group) &&
               (channels == 1 || ss.c == 1) && hmult(n, ss.n) && hmult(h, ss.h) && hmult(w, ss.w) &&
               reinterpret_cast<uintptr_t>(src) % (half * sizeof(E)) == 0;
  p.linear_pix = channel_shuffle_linear_pixels(ss, n, h, w, p.src_ps) && channel_shuffle_linear_pixels(ds, n, h, w, p.dst_ps);
  return p;
}

// The tiled kernel's parameters for a plan with plan.tiled.
template <class E>
__host__ inline ChannelShuffleTileParams<E> make_channel_shuffle_tile_params(const ChannelShufflePlan& plan,
                                                                             const E* src, E* dst, int pixels,
                                                                             int channels, int total, int groups,
                                                                             int offset) {
  ChannelShuffleTileParams<E> p{};
  p.src = src;
  p.dst = dst;
  p.pixels = pixels;
  p.tile_pixels = plan.tile_pixels;
  p.tiles = (pixels + plan.tile_pixels - 1) / plan.tile_pixels;
  p.channels = channels;
  p.total = total;
  p.period = plan.period;
  p.period_bytes = plan.period / total * channels * static_cast<int>(sizeof(E));
  p.div_period = FastDivmod(static_cast<uint32_t>(plan.period));
  p.table_offset = plan.table_offset;
  p.groups = groups;
  p.per_group = total / groups;
  p.offset = offset;
  p.fill = plan.fill;
  return p;
}

// ---- the generic kernel (any strides) --------------------------------------------------------

template <class E, int V, bool kPixelFast>
__global__ void __launch_bounds__(256) channel_shuffle_kernel(const ChannelShuffleParams<E> p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < p.items; e += step) {
    ChannelShuffleBody<E, V, kPixelFast>::run(p, e);
  }
}

// V: words per Q vector, 16 bytes or (total % that != 0: ShuffleNetV2 x1.0's 116 channels) 8 bytes.
template <class E, int V, int kG>
__global__ void __launch_bounds__(256) channel_shuffle_fill_kernel(const ChannelShuffleParams<E> p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < p.items; e += step) {
    ChannelShuffleFillBody<E, V, kG>::run(p, e);
  }
}

}  // namespace cnnkern
