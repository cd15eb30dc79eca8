// Channel permutation copy through a ShuffleMap: channel shuffle, the passthrough half of a shuffled
// concat, and their inverses.
//   scatter: dst[n, map.dest(c), p, q] = src[n, c, p, q]   for c < channels
//   gather:  dst[n, c, p, q] = src[n, map.dest(c), p, q]   for c < channels
// A pure copy, so the kernels work on raw storage words (E = uint16_t / uint32_t by element size).
//
// Two kernels; plan_channel_shuffle (shared by csrc/ and the emulator) picks:
//   channel_shuffle_tile_kernel   both tensors dense channels-fast (NHWC with pixel stride = channel
//       count) and 16-byte aligned. Then the P pixels of a tile are one contiguous run of P*C words on
//       each side whatever C % 8 is, so a CTA copies its input run into shared memory with 16-byte
//       loads and writes the output run with 16-byte stores, gathering each output word from shared
//       memory through a per-CTA offset table. See kernels/conv/channel_shuffle.md for the model.
//   channel_shuffle_kernel (generic)  any strides. Each tensor is read and written through its own
//       strides, V words at a time along the contiguous dimension:
//         kPixelFast   one channel, V consecutive pixels (NCHW-like: src and dst planes both contiguous)
//         !kPixelFast  one pixel, V consecutive channels of the unpermuted side (NHWC-like); the
//                      permuted side is accessed element by element (its channels are map.groups apart)
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

// ---- the tiled channels-fast kernel -----------------------------------------------------------
//
// Per tile of P pixels [m0, m0 + P): the input run is in[m0 * Ci, (m0 + P) * Ci) and the output run
// out[m0 * Co, (m0 + P) * Co), Ci / Co the words per pixel of each side (scatter: Ci = channels,
// Co = total; gather: the reverse). P is a multiple of V, so every run starts 16-byte aligned; only
// the tensor's last tile can end inside a vector (its tail words are copied one by one).
//
// Output word k of a run (pixel k / Co, channel k % Co) comes from input word (k / Co) * Ci + s(k % Co),
// s the source channel. That offset is periodic in k with period L = lcm(Co, V) words (L / Co pixels):
// table[r] = ((r / Co) * Ci + s(r % Co)) * sizeof(E) for r < L (a byte offset: the word address is
// then one add), so output vector k = u * L + r (r a multiple of V) reads its V offsets with one
// aligned shared load and adds u * (L / Co) * Ci words. One fastdivmod per 16-byte vector, none per
// word. kMasked (scatter into a wider tensor, channels < total): channels that no source maps to
// are kNoSource in the table and are not written (another kernel owns them), so that variant stores
// word by word (its loads stay 16-byte).
//
// Shared memory: the input run (P * Ci words), then the table. Per CTA <= 48 KB (the plan checks),
// 256 threads, <= 32 registers (launch bounds): 8 CTAs per SM when the run is <= ~27 KB, which the
// plan's 16 KB run target keeps. Bank conflicts and the time model: kernels/conv/channel_shuffle.md.
template <class E>
struct ChannelShuffleTileParams {
  const E* src;
  E* dst;
  int pixels;
  int tile_pixels;  // P, a multiple of V
  int tiles;        // ceil(pixels / P)
  int in_ch;        // Ci: words per pixel of the input run
  int out_ch;       // Co: words per pixel of the output run
  int period;       // L = lcm(Co, V): table entries
  int period_bytes; // (L / Co) * Ci * sizeof(E): input bytes per period
  FastDivmod div_period;
  int table_offset;  // bytes from the shared-memory base to the table (16-byte aligned, after the run)
  // The map, for building the table: scatter s(o) = the c < channels with map.dest(c) = o (if any);
  // gather s(o) = map.dest(o).
  ShuffleMap map;
  int per_group;  // total / groups
  int channels;
  bool scatter;
};

constexpr uint16_t kNoSource = 0xffff;

template <class E, bool kMasked>
struct ChannelShuffleTile {
  static constexpr int V = 16 / static_cast<int>(sizeof(E));
  static constexpr int kThreads = 256;
  static constexpr int kLoadBatch = 4;  // 16-byte loads a thread has in flight before storing them
  using Vec = Words<E, V>;
  using Offsets = Words<uint16_t, V>;

  // Source channel of output channel o, or -1 when nothing maps there (scatter into a wider tensor).
  CNNKERN_HD static int source(const ChannelShuffleTileParams<E>& p, int o) {
    if (!p.scatter) return p.map.dest(o);
    const int d = (o % p.map.groups) * p.per_group + o / p.map.groups;  // inverse of dest's transpose
    const int c = d - p.map.offset;
    return c >= 0 && c < p.channels ? c : -1;
  }

  // Once per CTA (real divisions: L <= 8 * Co entries over 256 threads).
  CNNKERN_HD static void build_table(const ChannelShuffleTileParams<E>& p, unsigned char* smem, int tid) {
    uint16_t* table = reinterpret_cast<uint16_t*>(smem + p.table_offset);
    for (int r = tid; r < p.period; r += kThreads) {
      const int px = r / p.out_ch, s = source(p, r - px * p.out_ch);
      table[r] = s < 0 ? kNoSource : static_cast<uint16_t>((px * p.in_ch + s) * static_cast<int>(sizeof(E)));
    }
  }

  CNNKERN_HD static int pixels_in(const ChannelShuffleTileParams<E>& p, int tile) {
    const int m0 = tile * p.tile_pixels;
    return p.pixels - m0 < p.tile_pixels ? p.pixels - m0 : p.tile_pixels;
  }

  // Phase 1: the tile's input run -> shared memory, kLoadBatch 16-byte loads in flight per thread.
  CNNKERN_HD static void load(const ChannelShuffleTileParams<E>& p, unsigned char* smem, int tile, int tid) {
    const int words = pixels_in(p, tile) * p.in_ch;
    const int vecs = words / V;
    const E* __restrict__ in = p.src + tile * p.tile_pixels * p.in_ch;
    // Moved as uint4, not Words<E, V>: a conditionally assigned array of 16-bit words makes the
    // compiler merge halves with PRMT (about 12 per vector); 32-bit lanes are copied as they are.
    const uint4* __restrict__ in_v = reinterpret_cast<const uint4*>(in);
    uint4* run_v = reinterpret_cast<uint4*>(smem);
    // The last tile of the tensor may end inside a vector: its tail words one by one.
    const int tail = vecs * V + tid;
    if (tail < words) reinterpret_cast<E*>(smem)[tail] = in[tail];
#pragma unroll 1
    for (int i0 = tid; i0 < vecs; i0 += kLoadBatch * kThreads) {
      uint4 r[kLoadBatch];
#pragma unroll
      for (int b = 0; b < kLoadBatch; ++b)
        if (i0 + b * kThreads < vecs) r[b] = in_v[i0 + b * kThreads];
#pragma unroll
      for (int b = 0; b < kLoadBatch; ++b)
        if (i0 + b * kThreads < vecs) run_v[i0 + b * kThreads] = r[b];
    }
  }

  // Phase 2: the tile's output run from shared memory, one 16-byte store per V output words.
  CNNKERN_HD static void store(const ChannelShuffleTileParams<E>& p, const unsigned char* smem, int tile, int tid) {
    const int words = pixels_in(p, tile) * p.out_ch;
    const int vecs = words / V;
    E* __restrict__ out = p.dst + tile * p.tile_pixels * p.out_ch;
    const uint16_t* table = reinterpret_cast<const uint16_t*>(smem + p.table_offset);
    // The last tile of the tensor may end inside a vector: its tail words first (word by word), so that
    // `words` is dead in the loop (one register fewer under the 32-register budget).
    const int k = vecs * V + tid;
    if (k < words) {
      uint32_t u, r;
      p.div_period.divmod(static_cast<uint32_t>(k), u, r);
      const uint16_t o = table[r];
      if (!kMasked || o != kNoSource)
        out[k] = *reinterpret_cast<const E*>(smem + static_cast<int>(u) * p.period_bytes + o);
    }
    // Not unrolled: the 32-register budget holds one vector's offsets, words and addresses at a time
    // (unrolled, ptxas spilled); the loads of consecutive iterations are independent anyway.
#pragma unroll 1
    for (int i = tid; i < vecs; i += kThreads) {
      uint32_t u, r;
      p.div_period.divmod(static_cast<uint32_t>(i * V), u, r);
      const unsigned char* base = smem + static_cast<int>(u) * p.period_bytes;
      const Offsets t = *reinterpret_cast<const Offsets*>(table + r);
      if constexpr (!kMasked) {
        Vec w;
#pragma unroll
        for (int j = 0; j < V; ++j) w.v[j] = *reinterpret_cast<const E*>(base + t.v[j]);
        reinterpret_cast<Vec*>(out)[i] = w;
      } else {
        // Word by word: with channels < total the image of the map interleaves with the channels another
        // kernel writes (groups = 2: every other one), so a 16-byte vector is almost never all ours.
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (t.v[j] != kNoSource) out[i * V + j] = *reinterpret_cast<const E*>(base + t.v[j]);
      }
    }
  }
};

// (256, 8): at most 32 registers, so that 8 CTAs fit an SM; the persistent grid is sized for that.
template <class E, bool kMasked>
__global__ void __launch_bounds__(256, 8) channel_shuffle_tile_kernel(const ChannelShuffleTileParams<E> p) {
  using Tile = ChannelShuffleTile<E, kMasked>;
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
// both 16-byte aligned, every run offset fits int32 and the shared memory fits 48 KB; otherwise the
// generic kernel, mapped along src's contiguous dimension, with 16-byte vectors where every stride
// that matters is a multiple of the vector, the bases are aligned and the vectors never straddle a
// plane or a pixel.
struct ChannelShufflePlan {
  int vec;          // generic kernel: words per access (1 or 16 / elem_bytes)
  bool pixel_fast;  // generic kernel: the mapping
  bool tiled;       // the tiled kernel instead of the generic one
  bool masked;      // tiled: scatter into a wider tensor (some output channels are not ours)
  int tile_pixels;  // tiled: P
  int period;       // tiled: L = lcm(Co, V)
  int table_offset; // tiled: bytes before the offset table
  int smem_bytes;   // tiled: dynamic shared memory per CTA
};

struct ChannelShuffleTileLimits {
  static constexpr int kRunBytes = 16384;      // a tile's input run: 4 loads of 16 B per thread
  static constexpr int kMinTiles = 1056;       // 132 SMs x 8 CTAs: shrink P before leaving SMs idle
  static constexpr int kSmemBytes = 48 * 1024; // no opt-in attribute needed
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
  const int ci = scatter ? channels : total, co = scatter ? total : channels;
  auto dense = [&](const Strides4& s, int c) {
    return (c == 1 || s.c == 1) && (w == 1 || s.w == c) && (h == 1 || s.h == int64_t{w} * c) &&
           (n == 1 || s.n == int64_t{h} * w * c);
  };
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  const int64_t pixels = int64_t{n} * h * w;
  if (pixels == 0 || channels == 0 || !dense(ss, ci) || !dense(ds, co) || !aligned(src) || !aligned(dst)) return;
  if (pixels * (ci > co ? ci : co) + 16 > INT32_MAX) return;  // run offsets and word indices in int32
  const int period = co / channel_shuffle_gcd(co, v) * v;
  const int64_t period_bytes = int64_t{period / co} * ci * elem_bytes;
  if (period_bytes >= kNoSource) return;  // table entries are 16-bit byte offsets
  int p = tile_pixels;
  if (p <= 0) {
    p = ChannelShuffleTileLimits::kRunBytes / (ci * elem_bytes) / v * v;
    const int64_t spread = (pixels + ChannelShuffleTileLimits::kMinTiles - 1) / ChannelShuffleTileLimits::kMinTiles;
    const int64_t spread_v = (spread + v - 1) / v * v;
    if (spread_v < p) p = static_cast<int>(spread_v);
    if (p < v) p = v;
  }
  const int64_t run_bytes = (int64_t{p} * ci * elem_bytes + 15) / 16 * 16;
  const int64_t smem = run_bytes + (int64_t{period} * 2 + 15) / 16 * 16;
  if (smem > ChannelShuffleTileLimits::kSmemBytes) return;
  plan.tiled = true;
  plan.masked = scatter && channels < total;
  plan.tile_pixels = p;
  plan.period = period;
  plan.table_offset = static_cast<int>(run_bytes);
  plan.smem_bytes = static_cast<int>(smem);
}

__host__ inline ChannelShufflePlan plan_channel_shuffle(int n, int h, int w, int channels, int total,
                                                        const Strides4& ss, const void* src, const Strides4& ds,
                                                        const void* dst, int elem_bytes, bool scatter) {
  ChannelShufflePlan plan{};
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
  return plan;
}

// The tiled kernel's parameters for a plan with plan.tiled.
template <class E>
__host__ inline ChannelShuffleTileParams<E> make_channel_shuffle_tile_params(const ChannelShufflePlan& plan,
                                                                             const E* src, E* dst, int pixels,
                                                                             int channels, int total, int groups,
                                                                             int offset, bool scatter) {
  const int ci = scatter ? channels : total, co = scatter ? total : channels;
  ChannelShuffleTileParams<E> p{};
  p.src = src;
  p.dst = dst;
  p.pixels = pixels;
  p.tile_pixels = plan.tile_pixels;
  p.tiles = (pixels + plan.tile_pixels - 1) / plan.tile_pixels;
  p.in_ch = ci;
  p.out_ch = co;
  p.period = plan.period;
  p.period_bytes = plan.period / co * ci * static_cast<int>(sizeof(E));
  p.div_period = FastDivmod(static_cast<uint32_t>(plan.period));
  p.table_offset = plan.table_offset;
  p.map = ShuffleMap(total, groups, offset);
  p.per_group = total / groups;
  p.channels = channels;
  p.scatter = scatter;
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

}  // namespace cnnkern
