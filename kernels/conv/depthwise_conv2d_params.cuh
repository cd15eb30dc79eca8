// Depthwise convolution (groups == C_in, channel multiplier m = C_out / C_in): parameter structs and
// the host-side planning that turns a problem into launch geometry. Planning lives here (plain C++,
// no torch) so that csrc/ and the CPU emulator build exactly the same parameters.
//
// Forward and input-grad are both expressed as one "gather" problem:
//   out[n, oc, y, x] = bias[oc] + sum_{j < nsrc} sum_{taps} src[n, (oc*ch_mul + j) / ch_div, sy, sx] * w[oc*ch_mul + j, 0, tap]
// * forward form (residue == false): sy = y*sh - ph + kh*dh, sx likewise; taps outside src read as 0.
//   The forward op is this with src = x (nsrc 1, ch_div m). The input-grad op with unit stride is this
//   too: src = grad_out, flipped taps, padding (K-1)*d - p (possibly negative), nsrc m, ch_mul m.
// * residue form (input-grad with stride > 1): only taps with (y + ph - kh*dh) % sh == 0 contribute,
//   at sy = (y + ph - kh*dh) / sh (same along x); the others are skipped rather than multiplied by 0.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "common/epilogue.cuh"
#include "common/fastdiv.cuh"
#include "conv/conv2d_params.cuh"

namespace cnnkern {

// Extents of one depthwise problem: x (n, c, h, w), weight (c_out = c*mult, 1, kh, kw),
// y (n, c_out, oh, ow). Padding is top/left; bottom/right padding is implied by oh/ow.
struct DwShape {
  int n, c, h, w;
  int mult, c_out;
  int oh, ow;
  int kh, kw;
  int sh, sw, ph, pw, dh, dw;
};

template <class T>
struct DwGather {
  const T* src;
  Strides4 ss;
  int src_h, src_w;
  const T* w;
  Strides4 ws;
  int kh, kw;
  const T* bias;  // nullptr when absent
  int64_t bias_stride;
  T* out;
  Strides4 os;
  int n, out_c, out_h, out_w;
  int sh, sw, ph, pw, dh, dw;
  int nsrc, ch_mul, ch_div;
  bool flip;     // tap (kh, kw) reads weight tap (KH-1-kh, KW-1-kw)
  bool residue;  // residue form (see above)
  int kh_step, kw_step;  // residue form: distance between contributing taps, s / gcd(s, d)
  // Forward epilogues (EpiKind): act(... * scale + shift) per output channel (kAct), or the statistics of
  // the stored values per pixel tile (kStats; tiles: dw_stats_tiles).
  ChannelAffine aff;
  StatsOut stats;
};

// ---- kernel parameter blocks ------------------------------------------------------------------------

// Shared-memory tiled forward-form kernel for pixel-contiguous (NCHW-like) tensors.
template <class T>
struct DwTiledParams {
  DwGather<T> g;
  int tx_bits, ty_bits;  // threads along x / y of one plane: 1 << bits
  int planes_per_block;
  int threads;
  int tiles_x, tiles_y;
  int in_rows, in_cols, pitch;  // staged source tile per plane (floats), pitch >= in_cols
  int planes;                   // n * out_c
  int64_t plane_groups;         // of planes_per_block planes
  // Each block runs groups_per_block consecutive plane groups of one spatial tile, staging the next group's
  // tile by cp.async while it computes the current one (only with vec_stage and nsrc == 1; else 1).
  int groups_per_block;
  int64_t block_groups;         // ceil(plane_groups / groups_per_block)
  unsigned grid_y;              // block group = blockIdx.z * grid_y + blockIdx.y
  FastDivmod out_c_div, ch_div, pitch_div, rows_div;
  int ssh, ssw;                 // source h/w strides as int32 (offsets within a plane fit)
  bool vec_store;               // out has unit x stride: try vector stores
  // 16-byte staging (DwTiledBlock::issue_tile_async / convert_tile): rows are copied in aligned 16-byte chunks,
  // `chunks` per staged row (enough to cover pitch columns from any start), by cp.async into a raw region
  // of [planes][in_rows][chunks] 16-byte slots at byte raw_offset, then converted into the fp32 tile.
  bool vec_stage;
  int chunks;
  FastDivmod chunks_div;
  int raw_offset;
  size_t smem_bytes;
};

// Direct (no input staging) gather kernel: threads own V consecutive channels of RP output pixels.
// Used for channels-last tensors (V = 16 bytes when the layout allows, else 1), for the input-grad
// with stride > 1 in any layout, and as the fallback when a tiled kernel's halo would not fit.
template <class T>
struct DwDirectParams {
  DwGather<T> g;
  int tc, tp, threads;     // channel-vector threads x pixel-group threads
  int cvecs;               // out_c / V
  int xg;                  // pixel groups per output row (per row pair with rh == 2)
  int groups;              // n * ceil(out_h / rh) * xg
  int gpt;                 // pixel groups per thread
  bool w_smem;             // weights staged in shared memory (transposed: [j][tap][channel])
  int cblocks;             // block b covers channel block b % cblocks, pixel block b / cblocks
  FastDivmod xg_div, oh_div, sw_div, ch_div;
  FastDivmod cblocks_div, taps_div, cbw_div, kw_div;
  // Residue form: division by the strides, d % s, and the source step between contributing taps.
  FastDivmod sh_div;
  int dh_mod, dw_mod, dsy, dsx;
  size_t smem_bytes;
  unsigned grid_x;         // 1-D grid: host checked < 2^31 blocks
  int stats_off;           // statistics epilogue: its reduction buffer, in floats into dynamic smem
  // Output rows per pixel group: 1, or 2 (dw_direct_rows: the stride-1 windows). Last, so that the other
  // fields keep their offsets in the kernel parameter block: inserted after xg it moved them, and ptxas
  // then spilled 8-28 bytes in three unchanged one-row kernels (stats epilogue, stride 2).
  int rh;
};

// Column walk (kernels/conv/depthwise_conv2d_column.cuh): for channels-last rows whose pixels are dense
// (pixel stride == C on both sides), a row is one run of W*C elements, and the source element under tap
// kw of output element e = ox*C + c is (ox*KS - pw + kw)*C + c: a fixed offset per thread. A thread owns
// kDwColumnElems consecutive elements of an output row and walks down rb output rows, each source row
// loaded once for the KT / KS output rows it feeds (a ring of accumulators). For the 3x3 windows whose
// channel count is not a multiple of 16 bytes (ShuffleNetV2's 58 / 116 channels), where the direct
// kernel's narrow vectors cost 41-80 SASS instructions per output (depthwise_conv2d.md, section 7).
constexpr int kDwColumnElems = 4;  // elements per thread (8 bytes of a 16-bit type, 16 of fp32)
template <class T>
struct DwColumnParams {
  DwGather<T> g;
  int threads;   // per block, a multiple of 32
  int cbk;       // column blocks per output row
  int rb;        // output rows per block
  int rchunks;   // ceil(out_h / rb)
  int lo;        // output row length in elements: out_w * out_c (int32: checked)
  FastDivmod c_div, cbk_div, rchunks_div;
  unsigned grid_x;  // n * rchunks * cbk blocks: block = (n * rchunks + chunk) * cbk + column block
  size_t smem_bytes;  // the staged filters and biases: dw_column_smem_floats
};
// Shared memory of the column walk: the 3x3 filters of all C channels as [tap][C] floats, then C biases.
constexpr int64_t dw_column_smem_floats(int64_t c) { return (9 + 1) * c; }

// Weight gradient, first pass: per (channel block, tap chunk, pixel split) partial sums.
template <class T>
struct DwWgradParams {
  DwShape s;
  const T* dy;
  Strides4 dys;
  const T* x;
  Strides4 xs;
  float* ws;           // deterministic: [splits][c_out][kh*kw], else [c_out][kh*kw] (zeroed, atomics)
  bool deterministic;
  int tc, tp;          // channel-vector threads (power of 2) x pixel threads; tc * tp == 256
  int cvecs;           // c_out / VW
  int cblocks, chunks, splits;
  int pix, pix_per_split;
  FastDivmod ow_div, oh_div, mult_div;
  size_t smem_bytes;
};

template <class T>
struct DwWgradFinalizeParams {
  const float* ws;
  int splits;  // 1 for the atomic workspace
  int c_out, kh, kw;
  T* dw;
  Strides4 dws;
};

// ---- planning (host) --------------------------------------------------------------------------------

namespace dw_detail {

inline int pow2_ceil(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}
inline int log2_exact(int v) {
  int b = 0;
  while ((1 << b) < v) ++b;
  return b;
}
inline int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int gcd(int a, int b) {
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

}  // namespace dw_detail

constexpr int kDwThreads = 256;
constexpr int kDwTiledRW = 4;  // outputs per thread along x (tiled kernel)
constexpr int kDwTiledRH = 2;  // outputs per thread along y (tiled kernel)
constexpr size_t kDwSmemDefault = 48 * 1024;

// Compile-time tap specialisation for unit stride and dilation: 3, 5 or 7 (square), else 0 (runtime).
template <class T>
inline int dw_window_k(const DwGather<T>& g) {
  if (g.residue || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1 || g.kh != g.kw) return 0;
  return (g.kh == 3 || g.kh == 5 || g.kh == 7) ? g.kh : 0;
}

template <class T>
inline DwGather<T> dw_fwd_gather(const DwShape& s, const T* x, Strides4 xs, const T* w, Strides4 ws, const T* bias,
                                 int64_t bias_stride, T* y, Strides4 ys) {
  DwGather<T> g{};
  g.src = x;
  g.ss = xs;
  g.src_h = s.h;
  g.src_w = s.w;
  g.w = w;
  g.ws = ws;
  g.kh = s.kh;
  g.kw = s.kw;
  g.bias = bias;
  g.bias_stride = bias_stride;
  g.out = y;
  g.os = ys;
  g.n = s.n;
  g.out_c = s.c_out;
  g.out_h = s.oh;
  g.out_w = s.ow;
  g.sh = s.sh;
  g.sw = s.sw;
  g.ph = s.ph;
  g.pw = s.pw;
  g.dh = s.dh;
  g.dw = s.dw;
  g.nsrc = 1;
  g.ch_mul = 1;
  g.ch_div = s.mult;
  g.flip = false;
  g.residue = false;
  g.kh_step = g.kw_step = 1;
  return g;
}

template <class T>
inline DwGather<T> dw_dgrad_gather(const DwShape& s, const T* dy, Strides4 dys, const T* w, Strides4 ws, T* dx,
                                   Strides4 dxs) {
  DwGather<T> g{};
  g.src = dy;
  g.ss = dys;
  g.src_h = s.oh;
  g.src_w = s.ow;
  g.w = w;
  g.ws = ws;
  g.kh = s.kh;
  g.kw = s.kw;
  g.bias = nullptr;
  g.bias_stride = 0;
  g.out = dx;
  g.os = dxs;
  g.n = s.n;
  g.out_c = s.c;
  g.out_h = s.h;
  g.out_w = s.w;
  g.nsrc = s.mult;
  g.ch_mul = s.mult;
  g.ch_div = 1;
  g.dh = s.dh;
  g.dw = s.dw;
  if (s.sh == 1 && s.sw == 1) {
    // Transposed unit-stride conv == forward conv with the flipped filter.
    g.sh = g.sw = 1;
    g.ph = (s.kh - 1) * s.dh - s.ph;
    g.pw = (s.kw - 1) * s.dw - s.pw;
    g.flip = true;
    g.residue = false;
    g.kh_step = g.kw_step = 1;
  } else {
    g.sh = s.sh;
    g.sw = s.sw;
    g.ph = s.ph;
    g.pw = s.pw;
    g.flip = false;
    g.residue = true;
    g.kh_step = s.sh / dw_detail::gcd(s.sh, s.dh);
    g.kw_step = s.sw / dw_detail::gcd(s.sw, s.dw);
  }
  return g;
}

// Tile geometry of the shared-memory kernel. Returns false when no tile with >= 32 threads fits in
// smem_max bytes (huge dilated filters): the caller then uses the direct kernel.
// sms: the device's multiprocessors (132: H200), which bound how many plane groups a block may chain (0, used
// by the emulator only: as many as allowed, so that small problems exercise the chained order too).
template <class T>
inline bool dw_plan_tiled(const DwGather<T>& g, size_t smem_max, DwTiledParams<T>* out, int sms = 132) {
  using namespace dw_detail;
  if (g.residue) return false;
  // In-plane source offsets are int32 in the staging loop.
  if (g.ss.h < 0 || g.ss.w < 0 || (int64_t{g.src_h} - 1) * g.ss.h + (int64_t{g.src_w} - 1) * g.ss.w >= (int64_t{1} << 31))
    return false;
  const int kt = dw_window_k(g);
  const int taps = g.kh * g.kw;
  const int64_t planes = int64_t{g.n} * g.out_c;
  int tx = std::min(32, pow2_ceil((g.out_w + kDwTiledRW - 1) / kDwTiledRW));
  int ty = std::min(kDwThreads / tx, pow2_ceil((g.out_h + kDwTiledRH - 1) / kDwTiledRH));
  int pp = kDwThreads / (tx * ty);
  pp = static_cast<int>(std::min<int64_t>(pp, pow2_ceil(static_cast<int>(std::min<int64_t>(planes, 256)))));
  // 16-byte chunks need unit column stride, every row start 16-byte aligned (the base pointer and the
  // n, c, h strides multiples of 16 bytes) and rows of whole chunks, so that a chunk is either inside
  // the row or outside it (e.g. contiguous NCHW with W a multiple of 8 bf16 / 4 fp32).
  constexpr int kE = 16 / static_cast<int>(sizeof(T));
  const bool vec_stage = g.ss.w == 1 && reinterpret_cast<uintptr_t>(g.src) % 16 == 0 && g.ss.h % kE == 0 &&
                         g.ss.c % kE == 0 && g.ss.n % kE == 0 && g.src_w % kE == 0;
  DwTiledParams<T> p{};
  for (;;) {
    const int tile_w = tx * kDwTiledRW, tile_h = ty * kDwTiledRH;
    p.in_rows = (tile_h - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    p.in_cols = (tile_w - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    if (kt > 0) {
      // The window of a thread is read as float4s: RW + K - 1 columns rounded up to 4.
      const int wn = (kDwTiledRW + kt - 1 + 3) / 4 * 4;
      p.pitch = (std::max(p.in_cols, (tx - 1) * kDwTiledRW + wn) + 3) / 4 * 4;
    } else {
      p.pitch = p.in_cols;
    }
    const int threads = tx * ty * pp;
    p.smem_bytes = (size_t(pp) * p.in_rows * p.pitch + size_t(pp) * taps) * sizeof(float);
    p.chunks = (p.pitch + kE - 1) / kE + 1;
    if (vec_stage) {
      // The raw cp.async region after the fp32 tile and the weights, 16-byte aligned.
      p.raw_offset = static_cast<int>((p.smem_bytes + 15) / 16 * 16);
      p.smem_bytes = size_t(p.raw_offset) + size_t(pp) * p.in_rows * p.chunks * 16;
    }
    const bool fits_default = p.smem_bytes <= kDwSmemDefault;
    if (fits_default || (threads <= 128 && p.smem_bytes <= smem_max)) break;
    if (threads <= 32) return false;
    if (pp > 1) {
      pp /= 2;
    } else if (ty > 1) {
      ty /= 2;
    } else if (tx > 1) {
      tx /= 2;
    } else {
      return false;
    }
  }
  p.g = g;
  p.tx_bits = log2_exact(tx);
  p.ty_bits = log2_exact(ty);
  p.planes_per_block = pp;
  p.threads = tx * ty * pp;
  p.tiles_x = static_cast<int>(ceil_div64(g.out_w, int64_t{tx} * kDwTiledRW));
  p.tiles_y = static_cast<int>(ceil_div64(g.out_h, int64_t{ty} * kDwTiledRH));
  p.planes = static_cast<int>(planes);
  p.plane_groups = ceil_div64(planes, pp);
  // Chaining plane groups (up to 8) overlaps a group's loads with the previous group's FMAs inside a block,
  // instead of relying only on the other resident blocks; but keep >= 32 blocks per SM (4-5 resident x
  // 6-8 waves) so that the last wave stays short.
  p.groups_per_block = 1;
  const int64_t min_blocks = int64_t{std::max(sms, 0)} * 32;  // sms == 0 (emulator only): chain up to 8
  while (vec_stage && g.nsrc == 1 && p.groups_per_block < 8 &&
         int64_t{p.tiles_x} * p.tiles_y * ceil_div64(p.plane_groups, 2 * p.groups_per_block) >= min_blocks)
    p.groups_per_block *= 2;
  p.block_groups = ceil_div64(p.plane_groups, p.groups_per_block);
  p.grid_y = static_cast<unsigned>(std::min<int64_t>(p.block_groups, 65535));
  p.out_c_div = FastDivmod(static_cast<uint32_t>(g.out_c));
  p.ch_div = FastDivmod(static_cast<uint32_t>(g.ch_div));
  p.pitch_div = FastDivmod(static_cast<uint32_t>(p.pitch));
  p.rows_div = FastDivmod(static_cast<uint32_t>(p.in_rows));
  p.ssh = static_cast<int>(g.ss.h);
  p.ssw = static_cast<int>(g.ss.w);
  p.vec_store = g.os.w == 1;
  p.vec_stage = vec_stage;
  p.chunks_div = FastDivmod(static_cast<uint32_t>(p.chunks));
  *out = p;
  return true;
}

template <class T>
inline unsigned dw_tiled_grid_z(const DwTiledParams<T>& p) {
  return static_cast<unsigned>(dw_detail::ceil_div64(p.block_groups, p.grid_y));
}

// Outputs per thread of the direct kernel for channel vectors of `bytes` bytes: 2 for 16-byte vectors
// (16 fp32 accumulators), else 4.
constexpr int dw_direct_rp(int bytes) { return bytes >= 16 ? 2 : 4; }

// Channel vector width of the direct kernel for channels-last tensors: the widest power of two up to
// 16 bytes that divides C_out and that `aligned(w)` allows (the caller checks unit channel stride, the
// other strides and the base pointers for w output / w / mult source channels). A multiplier m > 1 is
// folded into full 16-byte vectors only (MI == m == 2); narrower vectors (8, 4 bytes: ShuffleNetV2's 58
// or 116 bf16 channels) need m == 1. 1 means scalar.
template <class T, class Aligned>
inline int dw_vec_width(int c_out, int mult, Aligned aligned) {
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  for (int w = kV; w >= 2; w /= 2) {
    if (c_out % w != 0) continue;
    if (mult == 1 || (mult == 2 && w == kV)) {
      if (aligned(w)) return w;
    }
  }
  return 1;
}

// Multiprocessor count assumed when the caller has none to give (the emulator's default): an H200.
constexpr int kDwDefaultSms = 132;

// v: channel vector width (1, or 2..16 bytes' worth: dw_vec_width); channel_fast: consecutive threads take
// consecutive channel vectors (channels-last), else consecutive pixel groups (one channel per block);
// sms: the device's multiprocessors, which size the grid.
template <class T>
inline DwDirectParams<T> dw_plan_direct(const DwGather<T>& g, int v, bool channel_fast, int sms = kDwDefaultSms,
                                        int rh = 1) {
  using namespace dw_detail;
  DwDirectParams<T> p{};
  p.g = g;
  p.rh = rh;
  const int row_groups = static_cast<int>(ceil_div64(g.out_h, rh));  // output rows, or row pairs
  p.cvecs = g.out_c / v;
  const int rp = dw_direct_rp(v * static_cast<int>(sizeof(T)));
  if (channel_fast) {
    // At most 128 contiguous bytes per pixel (8 16-byte vectors, 16 8-byte, 32 4-byte) or 32 scalars per
    // block along C, so that at least 8 pixel groups share the block's weight staging.
    const int cap = v > 1 ? 8 * (16 / static_cast<int>(sizeof(T))) / v : 32;
    const int cb = static_cast<int>(ceil_div64(p.cvecs, cap));
    p.tc = static_cast<int>(ceil_div64(p.cvecs, cb));
  } else {
    p.tc = 1;
  }
  const int taps = g.kh * g.kw;
  // Transposed weights [j][tap][tc*v] in shared memory; fewer channels per block if they do not fit.
  auto wbytes = [&](int tc) { return size_t(g.nsrc) * taps * tc * v * sizeof(float); };
  while (p.tc > 1 && wbytes(p.tc) > kDwSmemDefault) p.tc = (p.tc + 1) / 2;
  p.w_smem = wbytes(p.tc) <= kDwSmemDefault;
  p.smem_bytes = p.w_smem ? wbytes(p.tc) : 0;
  p.tp = kDwThreads / p.tc;
  p.threads = p.tc * p.tp;
  if (g.residue) {
    const int per_res = static_cast<int>(ceil_div64(ceil_div64(g.out_w, g.sw), rp));
    p.xg = g.sw * per_res;
  } else {
    p.xg = static_cast<int>(ceil_div64(g.out_w, rp));
  }
  p.groups = g.n * row_groups * p.xg;  // host checked < 2^31
  const int64_t cblocks = ceil_div64(p.cvecs, p.tc);
  // Grid: each thread walks gpt pixel groups tp apart (about one output row apart in a channels-last
  // block), so a longer chain re-reads the rows of its previous groups from L1 instead of L2, and
  // amortises the weight staging. But the grid must stay at least kDwWaves blocks per multiprocessor
  // (occupancy is 2-8 blocks of 256 threads: >= 3-12 full waves) so that the partial last wave costs
  // little: gpt is the largest chain, up to 16, that keeps that many blocks.
  constexpr int64_t kDwWaves = 24;
  const int64_t iters = int64_t{p.groups} * cblocks / p.tp;  // block-iterations of tp groups
  const int64_t per_block = iters / (int64_t{std::max(sms, 1)} * kDwWaves);
  p.gpt = static_cast<int>(std::min<int64_t>(16, std::max<int64_t>(1, per_block)));
  p.xg_div = FastDivmod(static_cast<uint32_t>(p.xg));
  p.oh_div = FastDivmod(static_cast<uint32_t>(row_groups));
  p.sw_div = FastDivmod(static_cast<uint32_t>(g.sw));
  p.ch_div = FastDivmod(static_cast<uint32_t>(g.ch_div));
  p.cblocks = static_cast<int>(cblocks);
  p.cblocks_div = FastDivmod(static_cast<uint32_t>(cblocks));
  p.taps_div = FastDivmod(static_cast<uint32_t>(taps));
  p.cbw_div = FastDivmod(static_cast<uint32_t>(p.tc * v));
  p.kw_div = FastDivmod(static_cast<uint32_t>(g.kw));
  p.sh_div = FastDivmod(static_cast<uint32_t>(g.sh));
  p.dh_mod = g.dh % g.sh;
  p.dw_mod = g.dw % g.sw;
  p.dsy = g.kh_step * g.dh / g.sh;  // kh_step * dh = lcm(sh, dh)
  p.dsx = g.kw_step * g.dw / g.sw;
  p.grid_x = static_cast<unsigned>(std::min<int64_t>(cblocks * ceil_div64(p.groups, int64_t{p.tp} * p.gpt),
                                                     int64_t{1} << 31));  // host rejects the clamped case
  return p;
}

// The statistics epilogue of the direct kernel reduces V channel sums and a count per thread in shared
// memory after the staged weights (16-byte aligned).
template <class T>
inline void dw_direct_add_stats(DwDirectParams<T>* p, int v) {
  p->stats_off = static_cast<int>((p->smem_bytes / sizeof(float) + 3) / 4 * 4);
  p->smem_bytes = (size_t(p->stats_off) + size_t(v + 1) * p->threads) * sizeof(float);
}

// Pixel tiles of the statistics epilogue, the first extent of its partials (tiles, C_out, 3): the tiled
// kernel's (image, spatial tile) pairs, the direct kernel's pixel blocks.
template <class T>
inline int64_t dw_stats_tiles(const DwTiledParams<T>& p) {
  return int64_t{p.g.n} * p.tiles_x * p.tiles_y;
}
template <class T>
inline int64_t dw_stats_tiles(const DwDirectParams<T>& p) {
  return int64_t{p.grid_x} / p.cblocks;
}

// Window specialisation of a planned direct kernel: a square KT x KT filter (3, 5, 7) with unit dilation
// and the same stride (1 or 2) along both axes, channel vectors and staged weights. Its loads are
// clamped into the source (so src_h, src_w >= 1 is needed). kt == 0: the runtime-tap kernel.
struct DwWindow {
  int kt = 0;  // compile-time filter size, 0 for none
  int ks = 1;  // compile-time stride
};
template <class T>
inline DwWindow dw_direct_window(const DwDirectParams<T>& p, int v) {
  const DwGather<T>& g = p.g;
  DwWindow w;
  if (v <= 1 || !p.w_smem || g.residue || g.kh != g.kw || g.dh != 1 || g.dw != 1 || g.sh != g.sw) return w;
  if ((g.sh != 1 && g.sh != 2) || g.src_h < 1 || g.src_w < 1) return w;
  // Column offsets within a source row are int32 in the window.
  if (g.ss.w < 0 || (int64_t{g.src_w} - 1) * g.ss.w >= (int64_t{1} << 31)) return w;
  if (g.kh != 3 && g.kh != 5 && g.kh != 7) return w;
  w.kt = g.kh;
  w.ks = g.sh;
  return w;
}

// Row pairs (DwDirectBlock RH = 2): the stride-1 windows (3x3, 5x5, 7x7) on 16-byte channel vectors without
// a multiplier folded in, when there are at least two output rows. A thread computes 2 x RP outputs from
// (KT + 1) x NC loads (2 x KT x NC for two single-row groups): fewer loads, unpacks and selects per output
// and half the per-group index work (kernels/conv/depthwise_conv2d.md, section 4c). Stride 2, narrower
// vectors and the folded multiplier keep one row per group.
template <class T>
inline bool dw_direct_rows(const DwDirectParams<T>& p, int v, int mi, DwWindow w) {
  return w.kt > 0 && w.ks == 1 && v * static_cast<int>(sizeof(T)) == 16 && mi == 1 && p.g.out_h >= 2;
}

// Whether the column walk runs a gather problem whose direct plan would use channel vectors of v
// elements: 4- to 8-byte vectors (v elements per access of the walk; whole 16-byte vectors keep the
// direct kernel's row pairs), the forward form of a 3x3 window with unit dilation and stride 1 or 2 on
// both axes, no multiplier, dense pixels on both sides, rows that fit 32-bit offsets.
template <class T>
inline bool dw_column_ok(const DwGather<T>& g, int v) {
  const int bytes = v * static_cast<int>(sizeof(T));
  if (bytes < 4 || bytes >= 16 || kDwColumnElems % v != 0) return false;
  if (g.residue || g.nsrc != 1 || g.ch_mul != 1 || g.ch_div != 1) return false;
  if (g.kh != 3 || g.kw != 3 || g.dh != 1 || g.dw != 1 || g.sh != g.sw || (g.sh != 1 && g.sh != 2)) return false;
  if (g.ss.c != 1 || g.os.c != 1 || g.ss.w != g.out_c || g.os.w != g.out_c) return false;
  if (g.src_h < 1 || g.src_w < 1 || g.out_h < 1 || g.out_w < 1 || g.n < 1) return false;
  if (dw_column_smem_floats(g.out_c) * int64_t{sizeof(float)} > int64_t{kDwSmemDefault}) return false;  // C <= 1228
  // Element indices in an output row are int32; byte offsets in a source row uint32 (DwColumnThread::boff_).
  constexpr int64_t kLim = (int64_t{1} << 31) - 64;
  return int64_t{g.src_w} * g.out_c * int64_t{sizeof(T)} < 2 * kLim && int64_t{g.out_w} * g.out_c < kLim;
}

// Geometry of the column walk: threads of a block cover one output row's elements in cbk blocks (the row
// split evenly, 32-thread multiples, at most kDwThreads); each block walks rb rows. A chunk re-reads
// KT - KS source rows of its neighbour and stages the filters once (~400 SASS instructions per thread), so
// rb is as long as possible (up to 32) while the grid keeps >= 3 blocks per multiprocessor (1.5 waves at 2
// resident blocks; ShuffleNetV2's N = 256 layers: one chunk per image, 512 blocks on 132 SMs).
template <class T>
inline DwColumnParams<T> dw_plan_column(const DwGather<T>& g, int sms = kDwDefaultSms) {
  using namespace dw_detail;
  DwColumnParams<T> p{};
  p.g = g;
  p.lo = g.out_w * g.out_c;
  const int64_t quads = ceil_div64(p.lo, kDwColumnElems);
  p.cbk = static_cast<int>(ceil_div64(quads, kDwThreads));
  p.threads = static_cast<int>(ceil_div64(ceil_div64(quads, p.cbk), 32) * 32);
  const int64_t row_blocks = int64_t{g.n} * p.cbk;
  const int64_t want = int64_t{std::max(sms, 1)} * 3;
  int64_t chunks = std::max<int64_t>(ceil_div64(g.out_h, 32), ceil_div64(want, row_blocks));
  chunks = std::min<int64_t>(chunks, g.out_h);
  p.rb = static_cast<int>(ceil_div64(g.out_h, chunks));
  p.rchunks = static_cast<int>(ceil_div64(g.out_h, p.rb));
  p.c_div = FastDivmod(static_cast<uint32_t>(g.out_c));
  p.cbk_div = FastDivmod(static_cast<uint32_t>(p.cbk));
  p.rchunks_div = FastDivmod(static_cast<uint32_t>(p.rchunks));
  p.grid_x = static_cast<unsigned>(std::min<int64_t>(row_blocks * p.rchunks, int64_t{1} << 31));  // host checks
  p.smem_bytes = static_cast<size_t>(dw_column_smem_floats(g.out_c)) * sizeof(float);
  return p;
}

// Which kernel runs a gather problem, and its parameters: one function for csrc/ and the emulator.
//   pixel-contiguous (NCHW-like) forward form -> the shared-memory tiled kernel when its tile fits in
//   smem_optin bytes; otherwise (channels-last, residue form, huge halos) the direct kernel with the
//   widest channel vector vmax allows (dw_vec_width; 1 when not channels-last), the multiplier folded
//   into vectors (mi) when v > 1, and a compile-time window (dw_direct_window).
// stats: the forward with the statistics epilogue (the direct kernel's reduction buffer).
template <class T>
struct DwGatherPlan {
  bool tiled = false;
  DwTiledParams<T> tp{};
  DwDirectParams<T> dp{};
  int v = 1, mi = 1;
  DwWindow win{};
  // The column walk (dw_column_ok; never with the statistics epilogue): cp, with v elements per access.
  bool column = false;
  DwColumnParams<T> cp{};

  int64_t stats_tiles() const { return tiled ? dw_stats_tiles(tp) : dw_stats_tiles(dp); }
  void set_epilogue(const ChannelAffine& aff, const StatsOut& stats) {
    DwGather<T>& g = tiled ? tp.g : (column ? cp.g : dp.g);
    g.aff = aff;
    g.stats = stats;
  }
};

// smem_optin == 0 (emulator only): no tiled kernel. global_w (emulator only): weights read from global
// memory, as when they do not fit in shared memory.
template <class T>
inline DwGatherPlan<T> dw_plan_gather(const DwGather<T>& g, bool channel_fast, int vmax, int mi, size_t smem_optin,
                                      int sms, bool stats, bool global_w = false) {
  DwGatherPlan<T> plan;
  if (!channel_fast && !g.residue && smem_optin > 0 && dw_plan_tiled(g, smem_optin, &plan.tp, sms)) {
    plan.tiled = true;
    return plan;
  }
  plan.v = channel_fast ? vmax : 1;
  if (channel_fast && !stats && !global_w && dw_column_ok(g, plan.v)) {
    plan.column = true;
    plan.cp = dw_plan_column(g, sms);
    return plan;
  }
  plan.dp = dw_plan_direct(g, plan.v, channel_fast, sms);
  if (global_w) {
    plan.dp.w_smem = false;
    plan.dp.smem_bytes = 0;
  }
  if (stats) dw_direct_add_stats(&plan.dp, plan.v);
  plan.mi = plan.v > 1 ? mi : 1;
  plan.win = dw_direct_window(plan.dp, plan.v);
  if (dw_direct_rows(plan.dp, plan.v, plan.mi, plan.win)) {
    // Same channel blocking and weight staging (the window needs staged weights, so global_w is off here);
    // groups, chain length and grid over row pairs.
    plan.dp = dw_plan_direct(g, plan.v, channel_fast, sms, 2);
    if (stats) dw_direct_add_stats(&plan.dp, plan.v);
  }
  return plan;
}

// Weight-gradient geometry. vw: channels per thread (1 or 4); kt: compile-time kernel size (0: runtime).
constexpr int kDwWgradMaxAcc = 42;  // accumulators per thread; keeps the reduction buffer under 48 KB
constexpr int dw_wgrad_rows_max(int kt, int vw) { return kt > 0 ? std::max(1, std::min(kt, kDwWgradMaxAcc / (kt * vw))) : 1; }
constexpr int dw_wgrad_chunks_of(int kt, int vw) { return kt > 0 ? (kt + dw_wgrad_rows_max(kt, vw) - 1) / dw_wgrad_rows_max(kt, vw) : 1; }
// Rows of taps per chunk (balanced): e.g. 7 rows with room for 6 -> chunks of 4 + 3.
constexpr int dw_wgrad_rows(int kt, int vw) { return kt > 0 ? (kt + dw_wgrad_chunks_of(kt, vw) - 1) / dw_wgrad_chunks_of(kt, vw) : 1; }
constexpr int kDwWgradGenericTaps = 8;
constexpr int dw_wgrad_taps_per_thread(int kt, int vw) { return kt > 0 ? dw_wgrad_rows(kt, vw) * kt : kDwWgradGenericTaps; }
// The block reduction sums each (accumulator, channel) over its tp pixel threads in groups of 32
// (or all tp when fewer), then the groups: buffer of per-thread values plus the group sums.
constexpr int dw_wgrad_red_groups(int tc) { return kDwThreads / tc >= 32 ? kDwThreads / tc / 32 : 1; }
constexpr size_t dw_wgrad_smem_floats(int na, int tc) {
  return size_t(na) * kDwThreads + size_t(na) * tc * dw_wgrad_red_groups(tc);
}

template <class T>
inline DwWgradParams<T> dw_plan_wgrad(const DwShape& s, int vw, bool channel_fast, int kt, bool deterministic) {
  using namespace dw_detail;
  DwWgradParams<T> p{};
  p.s = s;
  p.deterministic = deterministic;
  p.cvecs = s.c_out / vw;
  if (channel_fast) {
    // Power-of-two channel threads with the least idle lanes in the last block.
    int best = 1;
    int64_t best_waste = INT64_MAX;
    for (int tc = 32; tc >= 1; tc /= 2) {
      const int64_t waste = ceil_div64(p.cvecs, tc) * tc - p.cvecs;
      if (waste < best_waste) {
        best = tc;
        best_waste = waste;
      }
    }
    p.tc = best;
  } else {
    p.tc = 1;
  }
  p.tp = kDwThreads / p.tc;
  p.cblocks = static_cast<int>(ceil_div64(p.cvecs, p.tc));
  const int taps = s.kh * s.kw;
  p.chunks = kt > 0 ? dw_wgrad_chunks_of(kt, vw) : static_cast<int>(ceil_div64(taps, kDwWgradGenericTaps));
  p.pix = s.n * s.oh * s.ow;
  // The split count depends on the shape only, so deterministic results are identical on every GPU.
  constexpr int64_t kTargetBlocks = 2048;
  const int64_t min_pix = std::max<int64_t>(512, int64_t{p.tp} * 16);
  int64_t splits = ceil_div64(kTargetBlocks, int64_t{p.cblocks} * p.chunks);
  splits = std::min(splits, ceil_div64(p.pix, min_pix));
  splits = std::min<int64_t>(splits, 65535);
  if (deterministic) {
    constexpr int64_t kMaxWorkspaceBytes = int64_t{256} << 20;
    splits = std::min(splits, kMaxWorkspaceBytes / std::max<int64_t>(1, int64_t{4} * s.c_out * taps));
  }
  splits = std::max<int64_t>(splits, 1);
  p.pix_per_split = static_cast<int>(ceil_div64(p.pix, splits));
  p.splits = static_cast<int>(ceil_div64(p.pix, p.pix_per_split));  // no empty splits
  p.ow_div = FastDivmod(static_cast<uint32_t>(s.ow));
  p.oh_div = FastDivmod(static_cast<uint32_t>(s.oh));
  p.mult_div = FastDivmod(static_cast<uint32_t>(s.mult));
  const int na = dw_wgrad_taps_per_thread(kt, vw) * vw;
  p.smem_bytes = dw_wgrad_smem_floats(na, p.tc) * sizeof(float);
  return p;
}

}  // namespace cnnkern
