// Plain-old-data description of a grouped 1x1 convolution whose output channels are stored through a
// channel shuffle (ShuffleNet), filled in by the host (csrc/) and consumed by the problem policies in
// group_pointwise_conv2d.cuh. Tensors are addressed through element strides (Strides4), so NCHW,
// channels_last and sliced views need no copies.
#pragma once

#include <cstdint>

#include "common/epilogue.cuh"
#include "common/fastdiv.cuh"
#include "common/numeric.cuh"
#include "conv/conv2d_params.cuh"

namespace cnnkern {

// Channel c of an op sits at offset + c of a `total`-channel order that is then shuffled with
// `groups` groups: it is stored at ((c + offset) % per_group) * groups + (c + offset) / per_group.
// With groups == 1 and per_group == total this is c + offset (no shuffle). Same map as the Python
// ChannelMap.dest.
struct ShuffleMap {
  FastDivmod div_per_group;
  int groups = 1;
  int offset = 0;

  ShuffleMap() = default;
  __host__ ShuffleMap(int total, int shuffle_groups, int off)
      : div_per_group(static_cast<uint32_t>(total / shuffle_groups)), groups(shuffle_groups), offset(off) {}

  CNNKERN_HD int dest(int c) const {
    uint32_t q, r;
    div_per_group.divmod(static_cast<uint32_t>(c + offset), q, r);
    return static_cast<int>(r) * groups + static_cast<int>(q);
  }
};

// The inverse of ShuffleMap::dest: the channel c of this conv stored at column d of the `total`-channel
// tensor (shuffled with `groups` groups, the conv at `offset`); outside [0, c_out) when d is another conv's.
CNNKERN_HD int shuffle_source(int d, int total, int groups, int offset) {
  return (d % groups) * (total / groups) + d / groups - offset;
}

struct GpwShape {
  int n, h, w;          // batch and spatial size (same for input and output)
  int c_in, c_out;      // the conv's own channels
  int groups, cg_in, cg_out;
  int total;            // channels of the tensor the output is stored in (>= c_out; the concat case)
  int shuffle_groups;   // of that tensor; 1 = no shuffle
  int offset;           // of this conv's channels in the concatenated order

  __host__ ShuffleMap map() const { return ShuffleMap(total, shuffle_groups, offset); }
  __host__ int pixels() const { return n * h * w; }
};

// y[n, map.dest(c), p, q] = relu?((conv(x, w)[c] + bias[c]) * scale[c] + shift[c])
template <class T>
struct GpwFwdParams {
  GpwShape s;
  const T* x;
  Strides4 xs;
  const T* w;
  Strides4 ws;
  const T* bias;  // nullptr when absent
  int64_t bias_stride;
  ChannelVec scale, shift;
  bool relu;
  T* y;  // `total` channels
  Strides4 ys;
};

// dx = conv_input_grad(g, w * scale) with g[n, c] = dy[n, map.dest(c)] masked where out (same
// position) is not positive; out == nullptr means no ReLU.
template <class T>
struct GpwDgradParams {
  GpwShape s;
  const T* dy;  // `total` channels
  Strides4 dys;
  const T* out;  // saved output (ReLU mask), `total` channels, or nullptr
  Strides4 outs;
  const T* w;
  Strides4 ws;
  ChannelVec scale;
  T* dx;
  Strides4 dxs;
};

// dw[c, i] = scale[c] * sum over pixels of g[., c] * x[., group(c) * cg_in + i], g as for the input
// grad. Split-K over pixels into fp32 partials `workspace` (splits, c_out, cg_in), reduced in a fixed
// order (Conv2dWgradReduce).
template <class T>
struct GpwWgradParams {
  GpwShape s;
  const T* dy;
  Strides4 dys;
  const T* out;
  Strides4 outs;
  const T* x;
  Strides4 xs;
  ChannelVec scale;
  float* workspace;
  int splits;
  int k_per_split;  // multiple of the GEMM tile K
  T* dw;
  Strides4 dws;
};

// The weight gradient's split-K plan over the pixel extent (wgrad_split_plan).
__host__ inline SplitKPlan gpw_wgrad_plan(const GpwShape& s, int bm, int bn, int bk) {
  return wgrad_split_plan(s.cg_out, s.cg_in, int64_t{s.n} * s.h * s.w, s.groups, bm, bn, bk);
}

// ---- the small-K forward (group_pointwise_conv2d_smallk.cuh) ------------------------------------------
// Plan shared by csrc/ and the emulator: whether the dedicated kernel runs (why_not == nullptr), its tile,
// its shared-memory carve-up and its load/store modes. See kernels/conv/group_pointwise_conv2d.md for the
// arithmetic behind the bounds.

// Per-group reduction bounds (kernels/conv/group_pointwise_conv2d.md). fp32 FMA on CUDA cores: the
// intensity cg_in * cg_out / (cg_in + cg_out) FLOP per element stays within ~2x of the FMA/bandwidth
// balance (60.8 TFLOP/s over 4.24 TB/s) up to cg_in = 64 whatever cg_out is. mma.sync (16-bit, even cg_in):
// the tensor-core rate is no limit; the bound is shared memory (the plan's fit check), and 256 keeps the
// k loop and the filter of the ShuffleNet layers (cg_in <= 160 there) well inside it. Beyond: the GEMM.
constexpr int kGpwSmallKMaxCgIn = 64;
constexpr int kGpwSmallKMaxCgInMma = 256;
constexpr int kGpwMma = 0;  // the compute-width value (plan.rc, kernel RC) that selects mma.sync
constexpr int kGpwSmallKThreads = 256;
constexpr int kGpwSmallKRP = 8;  // pixels per thread (register tile rows)
// Two CTAs per SM: 228 KB less the 1 KB per CTA the hardware reserves.
constexpr int kGpwSmallKSmemBudget = 113 * 1024;

enum : int {
  kGpwInDense16 = 0,  // the tile's pixels are one contiguous run (pixel pitch == C_in): 16-byte cp.async
  kGpwInScalar = 1,   // any uniform pixel pitch / alignment: element loads
  kGpwOutSlab16 = 0,  // the conv fills every channel of a dense, 16-byte aligned y: 16-byte stores
  kGpwOutScatter = 1,  // concat / strided y: element stores at pitch * pixel + dest(c)
  // How a fused passthrough's rows reach its stage:
  kGpwPassFlat = 0,     // packed and 16-byte aligned: the tile's rows are one run (16-byte cp.async)
  kGpwPassRows = 1,     // rows at any pitch: cp.async of pass_unit (16, 8 or 4) bytes, row by row
  kGpwPassScalar = 2    // neither (odd 16-bit widths or offsets): element loads
};

// The small-K kernel's problem: a grouped 1x1 "forward" (GpwFwdParams: reduction over cg_in per group,
// bias / scale / shift / ReLU epilogue, output channel c stored at the shuffled column of y) plus how its
// A operand and its filter are read. The forward reads x's C_in channels in order and the filter
// w[g * cg_out + j][k]. The input gradient is the same problem turned around (gpw_smallk_dgrad_problem):
// its A operand is dy, whose `total` channels hold the conv's output channel c at the forward's
// ShuffleMap column, masked where the saved output is not positive; its filter is the forward's,
// transposed per group and multiplied by scale per reduction channel (the folded-BN input gradient).
template <class T>
struct GpwSmallKProblem {
  GpwFwdParams<T> p;
  bool dgrad = false;
  int cr = 0;                     // channels per pixel of the A source (forward: C_in; input grad: total)
  int src_total = 0, src_shuffle_groups = 1, src_offset = 0;  // (input grad) the forward's ShuffleMap
  const T* mask = nullptr;        // (input grad) saved output, pixels as dy; nullptr: no ReLU
  Strides4 ms{0, 0, 0, 0};
  ChannelVec wscale;              // (input grad) filter scale per reduction channel
  int64_t wg = 0, wj = 0, wk = 0;  // filter (group g, column j, reduction k) at w[g * wg + j * wj + k * wk]
  // (forward) A passthrough fused into the store (shuffle_cat_pointwise): channels [0, c_pass) of the
  // concatenated order, before the conv's (offset == c_pass, c_pass + c_out == total). Each tile's
  // passthrough rows are copied with its input slab and placed in the out tile, so the whole interleaved
  // y slab leaves with 16-byte stores and y needs no separate passthrough pass.
  const T* pass = nullptr;
  Strides4 pss{0, 0, 0, 0};
  int c_pass = 0;
};

template <class T>
__host__ GpwSmallKProblem<T> gpw_smallk_fwd_problem(const GpwFwdParams<T>& p) {
  GpwSmallKProblem<T> q;
  q.p = p;
  q.cr = p.s.c_in;
  q.src_total = p.s.c_in;
  q.wg = int64_t{p.s.cg_out} * p.ws.n;
  q.wj = p.ws.n;
  q.wk = p.ws.c;
  return q;
}

// dx[., g * cg_in + i] = sum_j g[., g * cg_out + j] * scale[g * cg_out + j] * w[g * cg_out + j][i]: a grouped
// 1x1 forward with cg_in' = cg_out, cg_out' = cg_in, no shuffle, bias or activation, stored into dx.
template <class T>
__host__ GpwSmallKProblem<T> gpw_smallk_dgrad_problem(const GpwDgradParams<T>& d) {
  const GpwShape& s = d.s;
  GpwSmallKProblem<T> q;
  q.p = GpwFwdParams<T>{GpwShape{s.n, s.h, s.w, s.c_out, s.c_in, s.groups, s.cg_out, s.cg_in, s.c_in, 1, 0},
                        d.dy,
                        d.dys,
                        d.w,
                        d.ws,
                        nullptr,
                        0,
                        ChannelVec{},
                        ChannelVec{},
                        false,
                        d.dx,
                        d.dxs};
  q.dgrad = true;
  q.cr = s.total;
  q.src_total = s.total;
  q.src_shuffle_groups = s.shuffle_groups;
  q.src_offset = s.offset;
  q.mask = d.out;
  q.ms = d.outs;
  q.wscale = d.scale;
  q.wg = int64_t{s.cg_out} * d.ws.n;  // group g's output channels start at row g * cg_out of w
  q.wj = d.ws.c;                      // column j of the turned problem: the forward's input channel
  q.wk = d.ws.n;                      // reduction k: the forward's output channel
  return q;
}

struct GpwSmallKPlan {
  const char* why_not = nullptr;  // nullptr: the small-K kernel runs
  int tile_p = 0, rc = 0, npg = 0, nchunks = 0, cpc = 0;
  int kpad = 0, cgp = 0, ldx = 0, ldo = 0, ldw = 0, out_cols = 0;
  int nb = 0, kw = 0, nbuf = 1;  // mma: n-tiles per item, filter row length (T); raw stages
  int ldr = 0;                   // raw stage row pitch (elements): cr, or C_in + 8 (see the plan)
  bool o_linear = false;         // out tile == the y slab, element for element (16-byte smem reads)
  int in_mode = 0, out_mode = 0;
  int64_t x_pitch = 0, y_pitch = 0, m_pitch = 0;  // pixel pitches of the A source, y, the mask
  int tiles = 0, grid = 0, ctas_per_sm = 0;
  int conv_dp = 0, conv_dc = 0;  // kGpwSmallKThreads / cr, % cr (convert-phase stride)
  int conv_ch = 1;               // (input grad) raw elements per convert step: 8 / 4 / 2 when cr is a multiple
  FastDivmod div_cin, div_cout, div_total, div_row_vecs;  // div_cin: by cr (raw row width)
  // Fused passthrough (problem.pass): its pixel pitch; how its rows are copied (kGpwPass*); its stage is
  // packed (rows of c_pass); pass_ch elements per step of the phase that places it in the out tile.
  bool pass = false;
  int pass_copy = 0, pass_unit = 0, pass_ch = 1;  // pass_unit: bytes per cp.async (kGpwPassRows)
  int64_t p_pitch = 0;
  FastDivmod div_pass, div_pass_units;  // by c_pass, by the units of a row
  // byte offsets into dynamic shared memory (all 16-byte aligned)
  int off_raw[2] = {0, 0};
  int off_mraw = 0;  // (input grad with ReLU) the mask slab, rows as the raw stage
  int off_pass = 0, off_pdst = 0;  // (fused passthrough) its stage, and the y column of each of its channels
  int off_x = 0, off_o = 0, off_w = 0, off_bias = 0, off_scale = 0, off_shift = 0, off_odst = 0, off_xcol = 0;
  int smem_bytes = 0;
  __host__ bool use() const { return why_not == nullptr; }
};

// Emulator-only overrides (0 / false: the plan's own choice).
struct GpwSmallKForce {
  int tile_p = 0, rc = 0;
  bool scalar_in = false, scatter_out = false, fma = false;
  int conv_ch = 0;
};

// The element distance between consecutive pixels when every pixel of an (n, c, h, w) view is `pitch`
// elements after the previous one (channels_last and channel slices of it); false otherwise.
__host__ inline bool gpw_uniform_pitch(int n, int c, int h, int w, const Strides4& s, int64_t& pitch) {
  pitch = w > 1 ? s.w : (h > 1 ? s.h : (n > 1 ? s.n : c));
  if (c > 1 && s.c != 1) return false;
  if (w > 1 && s.w != pitch) return false;
  if (h > 1 && s.h != int64_t{w} * pitch) return false;
  if (n > 1 && s.n != int64_t{h} * w * pitch) return false;
  return pitch >= 0;
}

__host__ inline int gpw_round_up(int v, int m) { return (v + m - 1) / m * m; }

// Consecutive 16-byte aligned regions of dynamic shared memory (the plans' carve-ups).
struct GpwSmemCarve {
  int off = 0;
  __host__ int take(int bytes) {
    const int o = off;
    off += gpw_round_up(bytes, 16);
    return o;
  }
};

template <class T>
__host__ GpwSmallKPlan plan_gpw_smallk(const GpwSmallKProblem<T>& q, int num_sms, GpwSmallKForce force = {}) {
  GpwSmallKPlan pl;
  const GpwFwdParams<T>& p = q.p;
  const GpwShape& s = p.s;
  const int esz = static_cast<int>(sizeof(T));
  // 16-bit types use mma.sync: the forward with an even cg_in (32-bit fragment loads straight from the raw
  // slab), the input gradient always (its fragments come from the converted, zero-padded A tile).
  const bool mma = esz == 2 && (q.dgrad || s.cg_in % 2 == 0) && !force.fma && force.rc == 0;
  if (s.cg_in > (mma ? kGpwSmallKMaxCgInMma : kGpwSmallKMaxCgIn)) {
    if (q.dgrad) {
      pl.why_not = mma ? "more than 256 output channels per group (the input gradient's reduction: the GEMM)"
                       : "more than 64 output channels per group for the fp32 FMA input gradient (FMA-bound)";
    } else {
      pl.why_not = mma ? "more than 256 input channels per group (the GEMM's reduction loop is the better fit)"
                       : "more than 64 input channels per group for the fp32 FMA path (FMA-bound)";
    }
    return pl;
  }
  if (s.c_in < 1 || s.c_out < 1 || s.pixels() < 1) {
    pl.why_not = "empty problem";
    return pl;
  }
  if (!gpw_uniform_pitch(s.n, q.cr, s.h, s.w, p.xs, pl.x_pitch)) {
    pl.why_not = q.dgrad ? "grad_out is not channels_last with a uniform pixel pitch"
                         : "x is not channels_last with a uniform pixel pitch";
    return pl;
  }
  if (!gpw_uniform_pitch(s.n, s.total, s.h, s.w, p.ys, pl.y_pitch)) {
    pl.why_not = q.dgrad ? "grad_in is not channels_last with a uniform pixel pitch"
                         : "out is not channels_last with a uniform pixel pitch";
    return pl;
  }
  if (q.mask != nullptr && !gpw_uniform_pitch(s.n, q.cr, s.h, s.w, q.ms, pl.m_pitch)) {
    pl.why_not = "the saved output (ReLU mask) is not channels_last with a uniform pixel pitch";
    return pl;
  }
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  // Both slabs (the A source and the mask) are copied the same way: 16-byte cp.async when both are packed
  // and aligned, element loads otherwise.
  const bool mask_dense = q.mask == nullptr || (pl.m_pitch == q.cr && aligned(q.mask));
  pl.in_mode =
      (pl.x_pitch == q.cr && aligned(p.x) && mask_dense && !force.scalar_in) ? kGpwInDense16 : kGpwInScalar;
  const bool y_slab = pl.y_pitch == s.total && aligned(p.y);
  if (q.pass != nullptr) {
    // (the caller plans again without it, and fills y's passthrough channels by a separate pass)
    if (q.dgrad || q.c_pass < 1 || s.offset != q.c_pass || q.c_pass + s.c_out != s.total) {
      pl.why_not = "the fused passthrough must be the channels before the conv's, the two filling out";
      return pl;
    }
    if (!gpw_uniform_pitch(s.n, q.c_pass, s.h, s.w, q.pss, pl.p_pitch)) {
      pl.why_not = "the passthrough is not channels_last with a uniform pixel pitch";
      return pl;
    }
    if (!y_slab) {
      pl.why_not = "a fused passthrough needs a dense, 16-byte aligned channels_last out (whole-slab stores)";
      return pl;
    }
    pl.pass = true;
    // Its rows: one 16-byte run when packed and aligned; else the widest cp.async (16, 8 or 4 bytes) that
    // divides the row, the pitch and the base (the x.chunk(2, 1) view of ShuffleNetV2: 58 bf16 channels
    // at a pitch of 116 -> 4 bytes); else element loads.
    const int64_t row_b = int64_t{q.c_pass} * esz, pitch_b = pl.p_pitch * esz;
    const auto base = reinterpret_cast<uintptr_t>(q.pass);
    pl.pass_copy = kGpwPassScalar;
    if (pl.p_pitch == q.c_pass && base % 16 == 0) {
      pl.pass_copy = kGpwPassFlat;
    } else {
      for (int u : {16, 8, 4}) {
        if (row_b % u == 0 && pitch_b % u == 0 && base % u == 0) {
          pl.pass_copy = kGpwPassRows;
          pl.pass_unit = u;
          break;
        }
      }
    }
    if (force.scalar_in) {
      pl.pass_copy = kGpwPassScalar;
      pl.pass_unit = 0;
    }
    pl.pass_ch = q.c_pass % 8 == 0 ? 8 : q.c_pass % 4 == 0 ? 4 : q.c_pass % 2 == 0 ? 2 : 1;
    if (force.conv_ch) pl.pass_ch = force.conv_ch;
  }
  const bool full = (s.c_out == s.total && s.offset == 0) || pl.pass;
  pl.out_mode = (full && y_slab && (pl.pass || !force.scatter_out)) ? kGpwOutSlab16 : kGpwOutScatter;
  pl.out_cols = pl.out_mode == kGpwOutSlab16 ? s.total : s.c_out;

  if (mma) {
    pl.rc = kGpwMma;
    pl.cgp = gpw_round_up(s.cg_out, 8);
    const int ntiles = pl.cgp / 8;       // n-tiles of a group
    pl.cpc = (ntiles + 7) / 8;           // chunks of <= 8 n-tiles (32 accumulators per lane)
    pl.nb = (ntiles + pl.cpc - 1) / pl.cpc;
    pl.nchunks = s.groups * pl.cpc;
    pl.kpad = gpw_round_up(s.cg_in, 16);
    // Filter rows (one per output column, k contiguous) of kpad + 8 elements: the 8 rows x 4 words of a
    // B fragment load fall in distinct banks.
    pl.kw = pl.kpad + 8;
    pl.ldw = s.groups * pl.cgp;
    // Forward: the fragments are read from the raw stage itself, so the next tile is copied into the
    // other stage. A fragment loads cover 8 rows x 4 words: with C_in % 16 == 0 the rows' words all
    // start in the same bank (8-way conflicts for C_in = 384). Such rows are whole 16-byte vectors, so
    // the copy can pad each row by 8 elements, which spreads the 8 rows over the 32 banks.
    // Input grad: the raw slab is converted into the A tile a[pixel][g * kpad + k] (16-bit, zero-padded
    // k, masked), whose rows of groups * kpad + 8 elements (kpad % 16 == 0: 4 words mod 32 per row) put
    // the 8 rows x 4 words of a fragment in distinct banks; one raw stage, refilled after the convert.
    pl.nbuf = q.dgrad ? 1 : 2;
    pl.ldx = q.dgrad ? s.groups * pl.kpad + 8 : 0;
    // The accumulator rows of a fragment are 8 pixels: an unpadded out tile spreads them over banks well
    // enough, and keeps it linear (16-byte reads in the store).
    pl.ldo = pl.out_cols;
  } else {
    // Columns per thread: 8 halves the x loads per FMA, 4 wastes less on cg_out % 8 != 0 (45, 58, 12...).
    const int cgp4 = gpw_round_up(s.cg_out, 4), cgp8 = gpw_round_up(s.cg_out, 8);
    pl.rc = force.rc ? force.rc : (cgp8 * 100 <= cgp4 * 103 ? 8 : 4);
    pl.cgp = gpw_round_up(s.cg_out, pl.rc);
    pl.cpc = pl.cgp / pl.rc;
    pl.nchunks = s.groups * pl.cpc;
    pl.kpad = gpw_round_up(s.cg_in, 4);
    pl.ldw = s.groups * pl.cgp;
    pl.nbuf = 1;  // converted to x_s before the next copy is issued
    // x tile rows: fp32, 16-byte units per row odd so that 8 lanes' LDS.128 on consecutive pixels hit
    // distinct bank quads.
    // (The input grad keeps column groups * kpad for the raw columns of other convs: +1 before rounding.)
    pl.ldx = gpw_round_up(s.groups * pl.kpad + (q.dgrad ? 1 : 0), 4);
    if (pl.ldx % 8 == 0) pl.ldx += 4;
    // out tile rows: the compute stores of consecutive pixels land in distinct banks (odd words per row).
    pl.ldo = pl.out_cols;
    if (esz == 4) {
      if (pl.ldo % 2 == 0) pl.ldo += 1;
    } else {
      while (pl.ldo % 4 != 2) ++pl.ldo;
    }
  }
  pl.o_linear = pl.out_mode == kGpwOutSlab16 && pl.ldo == pl.out_cols;
  pl.ldr = mma && !q.dgrad && q.cr % 16 == 0 ? q.cr + 8 : q.cr;

  auto carve = [&](int tp) {
    GpwSmemCarve c;
    pl.off_raw[0] = c.take(tp * pl.ldr * esz);
    pl.off_raw[1] = pl.nbuf == 2 ? c.take(tp * pl.ldr * esz) : pl.off_raw[0];
    pl.off_mraw = c.take(q.mask != nullptr ? tp * pl.ldr * esz : 0);
    pl.off_x = c.take(tp * pl.ldx * (mma ? esz : 4));
    pl.off_o = c.take(tp * pl.ldo * esz);
    pl.off_w = c.take(mma ? pl.ldw * pl.kw * esz : pl.kpad * pl.ldw * 4);
    pl.off_bias = c.take(pl.ldw * 4);
    pl.off_scale = c.take(pl.ldw * 4);
    pl.off_shift = c.take(pl.ldw * 4);
    pl.off_odst = c.take(pl.ldw * 4);
    pl.off_xcol = c.take(mma && !q.dgrad ? 0 : q.cr * 4);
    pl.off_pass = c.take(pl.pass ? tp * q.c_pass * esz : 0);
    pl.off_pdst = c.take(pl.pass ? q.c_pass * 4 : 0);
    return c.off;
  };
  // Tile: the largest of 128/64/32/16 pixels that fits and keeps the (pixel group, column chunk) items
  // within 10% of a whole number of thread rounds; else the best balanced that fits.
  int best = 0;
  double best_eff = -1.0;
  const int cands[4] = {128, 64, 32, 16};
  for (int tp : cands) {
    if (force.tile_p && tp != force.tile_p) continue;
    if (carve(tp) > kGpwSmallKSmemBudget) continue;
    // FMA: one item per thread; mma: one per warp.
    const int workers = mma ? kGpwSmallKThreads / 32 : kGpwSmallKThreads;
    const int items = (mma ? tp / 16 : tp / kGpwSmallKRP) * pl.nchunks;
    const int rounds = (items + workers - 1) / workers;
    const double eff = static_cast<double>(items) / (rounds * workers);
    if (eff >= 0.9 && best_eff < 0.9) {
      best = tp;
      best_eff = eff;
      break;
    }
    if (eff > best_eff + 1e-9) {
      best = tp;
      best_eff = eff;
    }
  }
  if (best == 0) {
    pl.why_not = "tiles and filter do not fit the shared-memory budget";
    return pl;
  }
  pl.tile_p = best;
  pl.smem_bytes = carve(best);
  pl.npg = best / kGpwSmallKRP;
  pl.tiles = (s.pixels() + best - 1) / best;
  pl.ctas_per_sm = 2;  // the budget above and __launch_bounds__(256, 2)
  const int64_t want = int64_t{num_sms < 1 ? 1 : num_sms} * pl.ctas_per_sm;
  pl.grid = static_cast<int>(pl.tiles < want ? pl.tiles : want);
  pl.conv_ch = !q.dgrad ? 1 : q.cr % 8 == 0 ? 8 : q.cr % 4 == 0 ? 4 : q.cr % 2 == 0 ? 2 : 1;
  if (force.conv_ch) pl.conv_ch = force.conv_ch;
  pl.conv_dp = kGpwSmallKThreads / q.cr;
  pl.conv_dc = kGpwSmallKThreads % q.cr;
  pl.div_cin = FastDivmod(static_cast<uint32_t>(q.cr));
  pl.div_cout = FastDivmod(static_cast<uint32_t>(s.c_out));
  pl.div_total = FastDivmod(static_cast<uint32_t>(s.total));
  pl.div_row_vecs = FastDivmod(static_cast<uint32_t>(q.cr * esz / 16 > 0 ? q.cr * esz / 16 : 1));
  if (pl.pass) {
    pl.div_pass = FastDivmod(static_cast<uint32_t>(q.c_pass));
    pl.div_pass_units =
        FastDivmod(static_cast<uint32_t>(pl.pass_unit > 0 ? q.c_pass * esz / pl.pass_unit : 1));
  }
  return pl;
}

template <class T>
__host__ GpwSmallKPlan plan_gpw_smallk(const GpwFwdParams<T>& p, int num_sms, GpwSmallKForce force = {}) {
  return plan_gpw_smallk(gpw_smallk_fwd_problem(p), num_sms, force);
}

// ---- the small-K weight gradient (group_pointwise_conv2d_smallk_wgrad.cuh) ------------------------------
// Per group the product is tiny (cg_out x cg_in) and the reduction runs over every pixel, so a CTA streams a
// contiguous range of pixel tiles (its split) exactly as the forward streams its slabs: dy's and the saved
// output's P x total and x's P x C_in, converted into pixel-contiguous (transposed) tiles that mma.sync
// reads as K-contiguous operands, the products accumulated in registers across the CTA's tiles, then
// written once as fp32 partials for conv2d's fixed-order split reduction. 16-bit types only (fp32: the GEMM).

// Splits (CTAs) are a fixed count, not the device's: the sums, and so the bits, do not depend on the GPU.
constexpr int kGpwWgradSplits = 264;
// A warp owns up to kGpwWgradItems items of one 16-row m-tile x up to kGpwWgradItemN 8-column n-tiles (one A
// fragment load per k-step serves the item's n-tiles): 4 x 4 accumulator fragments, 64 fp32 registers per lane.
constexpr int kGpwWgradItems = 4;
constexpr int kGpwWgradItemN = 4;

struct GpwWgradPlan {
  const char* why_not = nullptr;  // nullptr: the small-K kernel runs
  int tile_p = 0;
  int mpad = 0, npad = 0;        // cg_out, cg_in rounded up to 16 / 8 (rows of GT / XT per group)
  int mt = 0, nt = 0;            // m-tiles, n-tiles per group
  int chunks = 0, nb = 0, items = 0;  // n-chunks per m-tile, n-tiles per chunk (<= kGpwWgradItemN); groups * mt * chunks
  int ldp = 0;                   // GT / XT row pitch (elements): tile_p + 8 (4 words mod 32: conflict-free frags)
  int in_mode = 0;               // kGpwInDense16: dy, mask and x packed and 16-byte aligned (cp.async)
  int64_t dy_pitch = 0, m_pitch = 0, x_pitch = 0;
  int tiles = 0, splits = 0, tiles_per_split = 0;
  int ch_dy = 1, ch_x = 1;       // convert step (elements): 8 / 4 / 2 / 1 by the row widths
  int trash_row = 0;             // GT row of other convs' dy columns (concat): never read
  FastDivmod div_dy, div_x, div_item, div_chunks;  // by total, C_in, mt * chunks, chunks
  FastDivmod div_dy_steps, div_x_steps;             // by total / ch_dy, C_in / ch_x (convert steps per row pair)
  int off_raw = 0, off_mraw = 0, off_xraw = 0, off_gt = 0, off_xt = 0, off_gcol = 0, off_xrow = 0;
  int smem_bytes = 0;
  __host__ bool use() const { return why_not == nullptr; }
};

// (force_*: emulator-only overrides; 0 / false = the plan's own choice)
template <class T>
__host__ GpwWgradPlan plan_gpw_smallk_wgrad(const GpwWgradParams<T>& p, int force_tile_p = 0, bool force_scalar = false,
                                            int force_splits = 0) {
  GpwWgradPlan pl;
  const GpwShape& s = p.s;
  const int esz = static_cast<int>(sizeof(T));
  if (esz != 2) {
    pl.why_not = "fp32 (the small-K weight gradient runs mma.sync on 16-bit operands)";
    return pl;
  }
  if (s.c_in < 1 || s.c_out < 1 || s.pixels() < 1) {
    pl.why_not = "empty problem";
    return pl;
  }
  pl.mpad = gpw_round_up(s.cg_out, 16);
  pl.npad = gpw_round_up(s.cg_in, 8);
  pl.mt = pl.mpad / 16;
  pl.nt = pl.npad / 8;
  pl.chunks = (pl.nt + kGpwWgradItemN - 1) / kGpwWgradItemN;
  pl.nb = (pl.nt + pl.chunks - 1) / pl.chunks;
  pl.items = s.groups * pl.mt * pl.chunks;
  if (pl.items > kGpwWgradItems * (kGpwSmallKThreads / 32)) {
    pl.why_not = "the per-group products need more than 32 accumulator items of 16 x 32 (the GEMM's split-K)";
    return pl;
  }
  if (!gpw_uniform_pitch(s.n, s.total, s.h, s.w, p.dys, pl.dy_pitch)) {
    pl.why_not = "grad_out is not channels_last with a uniform pixel pitch";
    return pl;
  }
  if (p.out != nullptr && !gpw_uniform_pitch(s.n, s.total, s.h, s.w, p.outs, pl.m_pitch)) {
    pl.why_not = "the saved output (ReLU mask) is not channels_last with a uniform pixel pitch";
    return pl;
  }
  if (!gpw_uniform_pitch(s.n, s.c_in, s.h, s.w, p.xs, pl.x_pitch)) {
    pl.why_not = "x is not channels_last with a uniform pixel pitch";
    return pl;
  }
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  const bool dense = pl.dy_pitch == s.total && aligned(p.dy) && pl.x_pitch == s.c_in && aligned(p.x) &&
                     (p.out == nullptr || (pl.m_pitch == s.total && aligned(p.out)));
  pl.in_mode = dense && !force_scalar ? kGpwInDense16 : kGpwInScalar;
  auto chunk = [](int c) { return c % 8 == 0 ? 8 : c % 4 == 0 ? 4 : c % 2 == 0 ? 2 : 1; };
  pl.ch_dy = chunk(s.total);
  pl.ch_x = chunk(s.c_in);
  pl.trash_row = s.groups * pl.mpad;
  auto carve = [&](int tp) {
    GpwSmemCarve c;
    const int ldp = tp + 8;
    pl.off_raw = c.take(tp * s.total * esz);
    pl.off_mraw = c.take(p.out != nullptr ? tp * s.total * esz : 0);
    pl.off_xraw = c.take(tp * s.c_in * esz);
    pl.off_gt = c.take((pl.trash_row + 1) * ldp * esz);
    pl.off_xt = c.take((s.groups * pl.npad + 8) * ldp * esz);  // + 8 rows: an odd last n-tile's ldmatrix pair
    pl.off_gcol = c.take(s.total * 4);
    pl.off_xrow = c.take(s.c_in * 4);
    return c.off;
  };
  int best = 0;
  const int cands[4] = {128, 64, 32, 16};
  for (int tp : cands) {
    if (force_tile_p && tp != force_tile_p) continue;
    if (carve(tp) <= kGpwSmallKSmemBudget) {
      best = tp;
      break;
    }
  }
  if (best == 0) {
    pl.why_not = "the slabs and transposed tiles do not fit the shared-memory budget";
    return pl;
  }
  pl.tile_p = best;
  pl.ldp = best + 8;
  pl.smem_bytes = carve(best);
  pl.tiles = (s.pixels() + best - 1) / best;
  const int cap = force_splits > 0 ? force_splits : kGpwWgradSplits;
  const int want = pl.tiles < cap ? pl.tiles : cap;
  pl.tiles_per_split = (pl.tiles + want - 1) / want;
  pl.splits = (pl.tiles + pl.tiles_per_split - 1) / pl.tiles_per_split;  // no empty splits
  pl.div_dy = FastDivmod(static_cast<uint32_t>(s.total));
  pl.div_x = FastDivmod(static_cast<uint32_t>(s.c_in));
  pl.div_dy_steps = FastDivmod(static_cast<uint32_t>(s.total / pl.ch_dy));
  pl.div_x_steps = FastDivmod(static_cast<uint32_t>(s.c_in / pl.ch_x));
  pl.div_item = FastDivmod(static_cast<uint32_t>(pl.mt * pl.chunks));
  pl.div_chunks = FastDivmod(static_cast<uint32_t>(pl.chunks));
  return pl;
}

}  // namespace cnnkern
