// Grouped 1x1 forward for channels_last problems with a short per-group reduction (cg_in <= 64), at
// the memory-bandwidth limit instead of the GEMM mainloop's issue limit (kernel-audit section 2):
//
//   * one CTA owns a tile of P consecutive pixels and ALL groups, so its input is one contiguous slab
//     (P x C_in, whatever C_in % 8 is), loaded with 16-byte cp.async into a raw stage; the next tile's
//     copy is in flight while this tile computes and stores (the stage is free once converted);
//   * CTAs are persistent (grid-stride over tiles): the whole filter (fp32, zero-padded per group),
//     bias / scale / shift and the shuffled destination column of every output channel are put in
//     shared memory once per CTA;
//   * fp32 (RC = 4 or 8): the raw slab is converted once to an fp32 tile x_s[pixel][group][kpad]
//     (zero-padded k), then each thread computes 8 pixels x RC channels of one group with fp32 FMA (exact
//     for fp32: no TF32), reading 4 k at a time with 16-byte shared loads (x: conflict-free rows, w:
//     broadcast). 16-bit types may take the same path (the plan's choice when cg_in is odd);
//   * 16-bit (RC = kGpwMma): each warp computes 16 pixels x up to 64 channels of one group with
//     mma.sync m16n8k16 (fp32 accumulate), its A fragments read straight from the raw slab (zero past
//     cg_in), its B fragments from the zero-padded filter; the raw stage is double-buffered;
//   * bias, scale, shift and ReLU are applied to the fp32 accumulator in that order (as the GEMM
//     epilogue does), and the value is rounded once into an out tile already in shuffled channel order;
//   * the out tile leaves as one contiguous slab with 16-byte stores (kGpwOutSlab16), or element by
//     element at pitch * pixel + dest(c) when the conv fills only part of y (concat) or y is strided;
//   * a ShuffleNetV2 tail's passthrough (shuffle_cat_pointwise: the channels before the conv's in the
//     concatenated order) can ride along: its rows are copied with the input slab (cp.async of whole
//     runs, or 16/8/4-byte pieces of strided rows such as x.chunk(2, 1)) and placed in the out tile at
//     their shuffled columns, so the whole interleaved slab leaves with 16-byte stores in one pass;
//   * the input gradient (kDgrad, gpw_smallk_dgrad_problem) is the same kernel on the turned-around
//     problem: the raw slab is dy's P x total pixels (and the saved output's, for the ReLU mask), which a
//     convert phase (for mma too) gathers through the inverse of the forward's shuffle into a zero-padded,
//     masked A tile; the filter is transposed per group and scaled per reduction channel in setup; the
//     out tile is dx's slab (no shuffle, no epilogue).
//
// The block is written as per-thread phases between barriers (setup, issue, convert, compute, store)
// driven by one schedule (run_cta) for the device kernel and the host emulator alike, so that
// kernels/check/emulate_group_pointwise_conv2d.cu replays exactly what the GPU runs.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/numeric.cuh"
#include "conv/group_pointwise_conv2d_params.cuh"

namespace cnnkern {

// 16-byte global -> shared copy: cp.async on sm_80+, a plain copy elsewhere (and on the host).
CNNKERN_HD void gpw_copy16_async(void* dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src) : "memory");
#elif defined(__CUDA_ARCH__)
  *static_cast<uint4*>(dst) = *static_cast<const uint4*>(src);
#else
  std::memcpy(dst, src, 16);
#endif
}

// B-byte global -> shared copy (B = 4, 8 or 16; both addresses B-aligned): cp.async.ca (the sizes below 16
// have no .cg form) on sm_80+, a plain copy elsewhere.
template <int B>
CNNKERN_HD void gpw_copy_async(void* dst, const void* src) {
  static_assert(B == 4 || B == 8 || B == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(s), "l"(src), "n"(B) : "memory");
#elif defined(__CUDA_ARCH__)
  using W = std::conditional_t<B == 4, uint32_t, std::conditional_t<B == 8, uint2, uint4>>;
  *static_cast<W*>(dst) = *static_cast<const W*>(src);
#else
  std::memcpy(dst, src, B);
#endif
}

CNNKERN_HD void gpw_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until all of this thread's copy groups have landed.
CNNKERN_HD void gpw_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// CH consecutive entries of a shared-memory column map, from map + d with d a multiple of CH (the map is
// 16-byte aligned): one 8-byte load for 2, 16-byte loads for 4 and 8.
template <int CH>
CNNKERN_HD void gpw_load_map(const int* map, int (&out)[CH]) {
  if constexpr (CH == 1) {
    out[0] = map[0];
  } else if constexpr (CH == 2) {
    const int2 c2 = *reinterpret_cast<const int2*>(map);
    out[0] = c2.x;
    out[1] = c2.y;
  } else {
#pragma unroll
    for (int q = 0; q < CH / 4; ++q) {
      const int4 c4 = *reinterpret_cast<const int4*>(map + 4 * q);
      out[4 * q] = c4.x;
      out[4 * q + 1] = c4.y;
      out[4 * q + 2] = c4.z;
      out[4 * q + 3] = c4.w;
    }
  }
}

// This thread's share (of kGpwSmallKThreads) of copying `rows` pixel rows of `width` elements into a shared
// stage whose row r starts at dst + r * ld: with `dense` (the rows packed at src + p0 * width, 16-byte
// aligned, and ld == width) 16-byte cp.async plus element copies of a ragged end; otherwise element loads
// at src + (p0 + r) * pitch + c (div: by width).
template <class T>
CNNKERN_HD void gpw_copy_slab(T* dst, int ld, const T* src, int64_t pitch, int width, int64_t p0, int rows, bool dense,
                              const FastDivmod& div, int t) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const int n = rows * width;
  if (dense) {
    const T* s = src + p0 * width;
    const int nv = n / kVec;
    for (int v = t; v < nv; v += kGpwSmallKThreads) gpw_copy16_async(dst + v * kVec, s + v * kVec);
    for (int e = nv * kVec + t; e < n; e += kGpwSmallKThreads) dst[e] = s[e];
  } else {
    for (int e = t; e < n; e += kGpwSmallKThreads) {
      uint32_t r, c;
      div.divmod(static_cast<uint32_t>(e), r, c);
      dst[r * ld + c] = src[(p0 + r) * pitch + c];
    }
  }
}

// This thread's share of copying `rows` rows of `width` elements, at src + (p0 + r) * pitch, into a packed
// stage (row r at dst + r * width) by B-byte cp.async; `units` divides by the row's width / B units.
template <int B, class T>
CNNKERN_HD void gpw_copy_rows_async(T* dst, const T* src, int64_t pitch, int width, int64_t p0, int rows,
                                    const FastDivmod& units, int t) {
  constexpr int kE = B / static_cast<int>(sizeof(T));
  const int per_row = width / kE, n = rows * per_row;
  for (int u = t; u < n; u += kGpwSmallKThreads) {
    uint32_t r, q;
    units.divmod(static_cast<uint32_t>(u), r, q);
    gpw_copy_async<B>(dst + u * kE, src + (p0 + r) * pitch + q * kE);
  }
}

struct alignas(16) GpwF4 {
  float v[4];
};

template <class T, int RC, bool kDgrad = false>
struct GpwSmallK {
  static_assert(RC == 4 || RC == 8 || RC == kGpwMma, "columns per thread, or mma");
  static constexpr bool kMma = RC == kGpwMma;
  static_assert(!kMma || sizeof(T) == 2, "mma.sync takes 16-bit operands");
  static constexpr int kThreads = kGpwSmallKThreads;
  static constexpr int kRP = kGpwSmallKRP;
  static constexpr int kVec = 16 / static_cast<int>(sizeof(T));

  GpwFwdParams<T> p;  // the (possibly turned-around) forward problem
  GpwSmallKPlan pl;
  ShuffleMap map;
  int pixels;
  int cr;  // raw row width: the A source's channels
  // Input grad only: the forward's shuffle (inverted in setup), the ReLU mask, the filter's scale.
  int src_total, src_sg, src_offset;
  const T* mask;
  ChannelVec wscale;
  int64_t wg, wj, wk;  // filter (group, column, reduction) element strides
  // Forward with a fused passthrough (plan.pass): channels [0, c_pass) of the concatenated order.
  const T* pass;
  int c_pass;

  __host__ static GpwSmallK make(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& plan) {
    GpwSmallK k;
    k.p = q.p;
    k.pl = plan;
    k.map = q.p.s.map();
    k.pixels = q.p.s.pixels();
    k.cr = q.cr;
    k.src_total = q.src_total;
    k.src_sg = q.src_shuffle_groups;
    k.src_offset = q.src_offset;
    k.mask = q.mask;
    k.wscale = q.wscale;
    k.wg = q.wg;
    k.wj = q.wj;
    k.wk = q.wk;
    k.pass = q.pass;
    k.c_pass = q.c_pass;
    return k;
  }
  __host__ static GpwSmallK make(const GpwFwdParams<T>& prm, const GpwSmallKPlan& plan) {
    return make(gpw_smallk_fwd_problem(prm), plan);
  }

  struct Smem {
    T* raw[2];
    T* mraw;    // (input grad) the mask slab
    float* x;   // fp32 x tile (FMA)
    T* a;       // 16-bit A tile (input grad, mma), same storage
    T* o;
    float* w;   // fp32 filter w[k][col] (FMA)
    T* wt;      // 16-bit filter wt[col][k] (mma), same storage
    float* bias;
    float* scale;
    float* shift;
    int* odst;
    int* xcol;
    T* pass;    // (fused passthrough) this tile's rows, packed
    int* pdst;  // (fused passthrough) the out-tile column of each of its channels
  };
  CNNKERN_HD Smem carve(unsigned char* base) const {
    Smem m;
    m.raw[0] = reinterpret_cast<T*>(base + pl.off_raw[0]);
    m.raw[1] = reinterpret_cast<T*>(base + pl.off_raw[1]);
    m.mraw = reinterpret_cast<T*>(base + pl.off_mraw);
    m.x = reinterpret_cast<float*>(base + pl.off_x);
    m.a = reinterpret_cast<T*>(base + pl.off_x);
    m.o = reinterpret_cast<T*>(base + pl.off_o);
    m.w = reinterpret_cast<float*>(base + pl.off_w);
    m.wt = reinterpret_cast<T*>(base + pl.off_w);
    m.bias = reinterpret_cast<float*>(base + pl.off_bias);
    m.scale = reinterpret_cast<float*>(base + pl.off_scale);
    m.shift = reinterpret_cast<float*>(base + pl.off_shift);
    m.odst = reinterpret_cast<int*>(base + pl.off_odst);
    m.xcol = reinterpret_cast<int*>(base + pl.off_xcol);
    m.pass = reinterpret_cast<T*>(base + pl.off_pass);
    m.pdst = reinterpret_cast<int*>(base + pl.off_pdst);
    return m;
  }
  // Raw stage `buf` (a select, not an indexed array: a dynamically indexed Smem would live in local memory).
  CNNKERN_HD T* raw_at(unsigned char* base, int buf) const {
    return reinterpret_cast<T*>(base + (buf != 0 ? pl.off_raw[1] : pl.off_raw[0]));
  }
  CNNKERN_HD int rows_of(int tile) const {
    const int left = pixels - tile * pl.tile_p;
    return left < pl.tile_p ? left : pl.tile_p;
  }

  // Filter element (group g, column j, reduction k); the input grad's is scaled by the reduction
  // channel's scale and rounded once to T, as the GEMM's WeightOperand does.
  CNNKERN_HD T filter(int g, int j, int k) const {
    const T v = p.w[g * wg + j * wj + k * wk];
    if (kDgrad && wscale.present()) {
      return Num<T>::from_float(Num<T>::to_float(v) * wscale.template at<T>(g * p.s.cg_in + k));
    }
    return v;
  }

  // Once per CTA: the zero-padded filter (fp32 w[k][g * cgp + j], or 16-bit wt[g * cgp + j][k] for
  // mma), the per-column epilogue vectors and destination column (-1 for padding columns); for FMA (and
  // the input grad) also the x / A column of every raw column (the input grad's other convs' columns: the
  // unread column groups * kpad) and a zeroed x / A tile (its k padding must read as 0: 0 * NaN from stale
  // memory would poison the sums).
  CNNKERN_HD void setup(unsigned char* smem, int t) const {
    const Smem m = carve(smem);
    const GpwShape& s = p.s;
    if constexpr (kMma) {
      for (int i = t; i < pl.ldw * pl.kw; i += kThreads) {
        const int col = i / pl.kw, k = i - col * pl.kw;
        const int g = col / pl.cgp, j = col - g * pl.cgp;
        T v = Num<T>::zero();
        if (k < s.cg_in && j < s.cg_out) v = filter(g, j, k);
        m.wt[i] = v;
      }
    }
    // (x holds floats for FMA, T for the input grad's mma A tile: zero its bytes, 4 at a time)
    const int zero_words = pl.tile_p * pl.ldx * (kMma ? static_cast<int>(sizeof(T)) : 4) / 4;
    for (int i = t; i < zero_words; i += kThreads) m.x[i] = 0.0f;
    for (int i = t; i < (kMma ? 0 : pl.kpad * pl.ldw); i += kThreads) {
      const int k = i / pl.ldw, col = i - k * pl.ldw;
      const int g = col / pl.cgp, j = col - g * pl.cgp;
      float v = 0.0f;
      if (k < s.cg_in && j < s.cg_out) v = Num<T>::to_float(filter(g, j, k));
      m.w[i] = v;
    }
    for (int col = t; col < pl.ldw; col += kThreads) {
      const int g = col / pl.cgp, j = col - g * pl.cgp;
      const bool valid = j < s.cg_out;
      const int c = g * s.cg_out + j;
      m.bias[col] = valid && p.bias != nullptr ? Num<T>::to_float(p.bias[c * p.bias_stride]) : 0.0f;
      m.scale[col] = valid && p.scale.present() ? p.scale.template at<T>(c) : 1.0f;
      m.shift[col] = valid && p.shift.present() ? p.shift.template at<T>(c) : 0.0f;
      m.odst[col] = !valid ? -1 : (pl.out_mode == kGpwOutSlab16 ? map.dest(c) : c);
    }
    if constexpr (kDgrad) {
      // Raw column d of dy holds the forward's output channel c = shuffle_source(d) (ShuffleMap's inverse).
      // Columns of other convs (concat) go to column groups * kpad, which no fragment or FMA reads.
      for (int d = t; d < cr; d += kThreads) {
        const int c = shuffle_source(d, src_total, src_sg, src_offset);
        m.xcol[d] = c >= 0 && c < s.c_in ? (c / s.cg_in) * pl.kpad + c % s.cg_in : s.groups * pl.kpad;
      }
    } else if (!kMma) {
      for (int c = t; c < s.c_in; c += kThreads) m.xcol[c] = (c / s.cg_in) * pl.kpad + c % s.cg_in;
    }
    if (!kDgrad && pl.pass) {
      // passthrough channel c is channel c of the concatenated order (the conv's start at c_pass): ShuffleMap's
      // dest at offset 0 (once per CTA: plain division)
      const int pg = s.total / s.shuffle_groups;
      for (int c = t; c < c_pass; c += kThreads) m.pdst[c] = (c % pg) * s.shuffle_groups + c / pg;
    }
  }

  // Starts the copy of tile `tile` into raw[buf] (rows of cr at pitch ldr; the input grad's mask slab
  // beside it) and closes this thread's group.
  CNNKERN_HD void issue(unsigned char* smem, int tile, int buf, int t) const {
    T* raw = raw_at(smem, buf);
    const int c_in = cr;  // raw row width (the forward's is C_in)
    const int rows = rows_of(tile);
    const int64_t p0 = static_cast<int64_t>(tile) * pl.tile_p;
    const bool dense = pl.in_mode == kGpwInDense16;
    if (dense && pl.ldr != c_in) {
      // padded rows (forward mma, C_in % 16 == 0: whole 16-byte vectors per row, no remainder)
      const T* src = p.x + p0 * c_in;
      const int nv = rows * c_in / kVec;
      for (int v = t; v < nv; v += kThreads) {
        uint32_t r, q;
        pl.div_row_vecs.divmod(static_cast<uint32_t>(v), r, q);
        gpw_copy16_async(raw + r * pl.ldr + q * kVec, src + v * kVec);
      }
    } else {  // (dense: packed rows, tile_p * cr a multiple of kVec, so the stage is the 16-byte aligned slab)
      gpw_copy_slab(raw, pl.ldr, p.x, pl.x_pitch, c_in, p0, rows, dense, pl.div_cin, t);
      if (kDgrad && mask != nullptr) {
        gpw_copy_slab(reinterpret_cast<T*>(smem + pl.off_mraw), pl.ldr, mask, pl.m_pitch, c_in, p0, rows, dense,
                      pl.div_cin, t);
      }
    }
    if constexpr (!kDgrad) {
      if (pl.pass) issue_pass(reinterpret_cast<T*>(smem + pl.off_pass), p0, rows, t);
    }
    gpw_async_commit();
  }
  // The fused passthrough's rows of the tile into its packed stage.
  CNNKERN_HD void issue_pass(T* dst, int64_t p0, int rows, int t) const {
    if (pl.pass_copy == kGpwPassRows) {
      const FastDivmod& u = pl.div_pass_units;
      if (pl.pass_unit == 16) return gpw_copy_rows_async<16>(dst, pass, pl.p_pitch, c_pass, p0, rows, u, t);
      if (pl.pass_unit == 8) return gpw_copy_rows_async<8>(dst, pass, pl.p_pitch, c_pass, p0, rows, u, t);
      return gpw_copy_rows_async<4>(dst, pass, pl.p_pitch, c_pass, p0, rows, u, t);
    }
    gpw_copy_slab(dst, c_pass, pass, pl.p_pitch, c_pass, p0, rows, pl.pass_copy == kGpwPassFlat, pl.div_pass, t);
  }

  // The fused passthrough from its stage into the out tile, at its shuffled columns (the conv's columns
  // are written by the compute: disjoint, so no barrier between the two). pass_ch elements per step: one
  // 16/8/4-byte shared load and the columns' pdst entries.
  CNNKERN_HD void place_pass(unsigned char* smem, int tile, int t) const {
    if constexpr (!kDgrad) {
      if (!pl.pass) return;
      const Smem m = carve(smem);
      const int n = rows_of(tile) * c_pass;
      if (pl.pass_ch == 8) return place_pass_chunks<8>(m, n, t);
      if (pl.pass_ch == 4) return place_pass_chunks<4>(m, n, t);
      if (pl.pass_ch == 2) return place_pass_chunks<2>(m, n, t);
      place_pass_chunks<1>(m, n, t);
    }
  }
  template <int CH>
  CNNKERN_HD void place_pass_chunks(const Smem& m, int n, int t) const {
    for (int e = t * CH; e < n; e += kThreads * CH) {
      uint32_t r, c;
      pl.div_pass.divmod(static_cast<uint32_t>(e), r, c);
      const Vec<T, CH> v = Vec<T, CH>::load(m.pass + e);
      int d[CH];
      gpw_load_map<CH>(m.pdst + c, d);
      T* orow = m.o + static_cast<int>(r) * pl.ldo;
#pragma unroll
      for (int j = 0; j < CH; ++j) orow[d[j]] = v.v[j];
    }
  }

  // The input grad's value of raw element i: dy, or zero where the saved output is not positive (F.relu's
  // gradient; a NaN output masks too).
  CNNKERN_HD static T masked(T v, const T* mraw, int i, bool has_mask) {
    return has_mask && !(Num<T>::to_float(mraw[i]) > 0.0f) ? Num<T>::zero() : v;
  }
  // Element i of the A tile (mma: 16-bit) or the x tile (FMA: fp32).
  CNNKERN_HD static void put(const Smem& m, int i, T v) {
    if constexpr (kMma) {
      m.a[i] = v;
    } else {
      m.x[i] = Num<T>::to_float(v);
    }
  }

  // raw[0] (slab order) -> x_s[pixel][g * kpad + k] in fp32 (FMA), or the 16-bit A tile (input grad, mma).
  // Element e = t + i * kThreads is (pixel, raw column) = divmod(e, cr), stepped incrementally. The input
  // grad gathers through xcol (the inverse shuffle; other convs' columns land in the unread column
  // groups * kpad), masked; with cr a multiple of 8 (4, 2), a thread takes 8 (4, 2) elements of one row at
  // a time: one 16-byte (8-, 4-byte) load of dy and of the mask, and of the elements' xcol entries.
  CNNKERN_HD void convert(unsigned char* smem, int tile, int t) const {
    const Smem m = carve(smem);
    const T* raw = m.raw[0];
    const int c_in = cr;
    const int n = rows_of(tile) * c_in;
    if constexpr (kDgrad) {
      if (pl.conv_ch == 8) return convert_chunks<8>(m, n, t);
      if (pl.conv_ch == 4) return convert_chunks<4>(m, n, t);
      if (pl.conv_ch == 2) return convert_chunks<2>(m, n, t);
    }
    int r = t / c_in, c = t - r * c_in;
    for (int e = t; e < n; e += kThreads) {
      if constexpr (kDgrad) {
        put(m, r * pl.ldx + m.xcol[c], masked(raw[r * pl.ldr + c], m.mraw, r * pl.ldr + c, mask != nullptr));
      } else {
        m.x[r * pl.ldx + m.xcol[c]] = Num<T>::to_float(raw[r * pl.ldr + c]);
      }
      r += pl.conv_dp;
      c += pl.conv_dc;
      if (c >= c_in) {
        c -= c_in;
        ++r;
      }
    }
  }
  // (raw rows are packed for the input grad: element (r, d) is raw[r * cr + d] = raw[e])
  // (Without a mask every element is kept: the mask reads as +1, so the select below needs no branch.)
  template <int CH>
  CNNKERN_HD void convert_chunks(const Smem& m, int n, int t) const {
    const bool has_mask = mask != nullptr;
    Vec<T, CH> ones;
#pragma unroll
    for (int j = 0; j < CH; ++j) ones.v[j] = Num<T>::from_float(1.0f);
    for (int e = t * CH; e < n; e += kThreads * CH) {
      uint32_t r, d;
      pl.div_cin.divmod(static_cast<uint32_t>(e), r, d);
      const Vec<T, CH> v = Vec<T, CH>::load(m.raw[0] + e);
      const Vec<T, CH> mv = has_mask ? Vec<T, CH>::load(m.mraw + e) : ones;
      const int base = static_cast<int>(r) * pl.ldx;
      int col[CH];
      gpw_load_map<CH>(m.xcol + d, col);
#pragma unroll
      for (int j = 0; j < CH; ++j) put(m, base + col[j], Num<T>::to_float(mv.v[j]) > 0.0f ? v.v[j] : Num<T>::zero());
    }
  }

  // Item = (pixel group pg, column chunk): pixels pg + r * npg (r < 8; consecutive lanes take
  // consecutive pixels), channels j0..j0+RC-1 of group g. Every tile row is computed (rows past the end
  // of the last tile hold stale finite data and are never stored).
  CNNKERN_HD void compute(unsigned char* smem, int t) const {
    const Smem m = carve(smem);
    const int npg = pl.npg, items = npg * pl.nchunks;
    for (int it = t; it < items; it += kThreads) {
      const int ch = it / npg, pg = it - ch * npg;
      const int g = ch / pl.cpc, j0 = (ch - g * pl.cpc) * RC;
      const float* xr = m.x + pg * pl.ldx + g * pl.kpad;
      const float* wr = m.w + g * pl.cgp + j0;
      const int xstep = npg * pl.ldx;
      float acc[kRP][RC];
#pragma unroll
      for (int r = 0; r < kRP; ++r)
#pragma unroll
        for (int j = 0; j < RC; ++j) acc[r][j] = 0.0f;
      for (int k = 0; k < pl.kpad; k += 4) {
        GpwF4 w4[4][RC / 4];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
          for (int q = 0; q < RC / 4; ++q)
            w4[kk][q] = *reinterpret_cast<const GpwF4*>(wr + (k + kk) * pl.ldw + 4 * q);
#pragma unroll
        for (int r = 0; r < kRP; ++r) {
          const GpwF4 x4 = *reinterpret_cast<const GpwF4*>(xr + r * xstep + k);
#pragma unroll
          for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int j = 0; j < RC; ++j) acc[r][j] = fmaf(x4.v[kk], w4[kk][j / 4].v[j % 4], acc[r][j]);
        }
      }
#pragma unroll
      for (int j = 0; j < RC; ++j) {
        const int col = g * pl.cgp + j0 + j;
        const int d = m.odst[col];
        if (d < 0) continue;
        const float b = m.bias[col], sc = m.scale[col], sh = m.shift[col];
#pragma unroll
        for (int r = 0; r < kRP; ++r) {
          float v = acc[r][j];
          v += b;
          v *= sc;
          v += sh;
          if (p.relu && v < 0.0f) v = 0.0f;  // (NaN stays NaN, as in F.relu)
          m.o[(pg + r * npg) * pl.ldo + d] = Num<T>::from_float(v);
        }
      }
    }
  }

  CNNKERN_HD void store(unsigned char* smem, int tile, int t) const {
    const Smem m = carve(smem);
    const int rows = rows_of(tile);
    const int64_t p0 = static_cast<int64_t>(tile) * pl.tile_p;
    if (pl.out_mode == kGpwOutSlab16) {
      // y rows are `total` apart: the tile is one run of rows * total elements; each 16-byte vector
      // gathers its elements from the padded out tile.
      const int total = p.s.total, n = rows * total, nv = n / kVec;
      T* dst = p.y + p0 * total;
      if (pl.o_linear) {  // the out tile is the slab: 16-byte shared reads
        for (int v = t; v < nv; v += kThreads) {
          *reinterpret_cast<Vec<T, kVec>*>(dst + v * kVec) = *reinterpret_cast<const Vec<T, kVec>*>(m.o + v * kVec);
        }
      }
      for (int v = pl.o_linear ? nv : t; v < nv; v += kThreads) {
        uint32_t r, c;
        pl.div_total.divmod(static_cast<uint32_t>(v * kVec), r, c);
        Vec<T, kVec> out;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          out.v[j] = m.o[r * pl.ldo + c];
          if (++c == static_cast<uint32_t>(total)) {
            c = 0;
            ++r;
          }
        }
        *reinterpret_cast<Vec<T, kVec>*>(dst + v * kVec) = out;
      }
      for (int e = nv * kVec + t; e < n; e += kThreads) {
        uint32_t r, c;
        pl.div_total.divmod(static_cast<uint32_t>(e), r, c);
        dst[e] = m.o[r * pl.ldo + c];
      }
    } else {
      const int c_out = p.s.c_out, n = rows * c_out;
      for (int e = t; e < n; e += kThreads) {
        uint32_t r, c;
        pl.div_cout.divmod(static_cast<uint32_t>(e), r, c);
        p.y[(p0 + r) * pl.y_pitch + map.dest(static_cast<int>(c))] = m.o[r * pl.ldo + c];
      }
    }
  }

  // ---- mma.sync compute (kMma) ----
  // Item = (m-tile of 16 pixels, group g, chunk of up to nb n-tiles of 8 columns); warps take items in
  // turn. Fragment layouts of m16n8k16 (PTX ISA), gid = lane / 4, tig = lane % 4, two consecutive k per
  // 32-bit register, the lower k in the low half:
  //   A reg q: row gid + 8 * (q & 1), k = 2 * tig + 8 * (q >> 1)     B reg q: k = 2 * tig + 8 * q, col gid
  //   C c[i]:  row gid + 8 * (i >> 1), col 2 * tig + (i & 1)
  struct MmaItem {
    int mt, g, n0, nt;  // m-tile, group, first n-tile (of the group), n-tiles in this item
  };
  CNNKERN_HD int mma_items() const { return pl.tile_p / 16 * pl.nchunks; }
  CNNKERN_HD MmaItem mma_item(int it) const {
    MmaItem m;
    m.mt = it / pl.nchunks;
    const int rem = it - m.mt * pl.nchunks;
    m.g = rem / pl.cpc;
    m.n0 = (rem - m.g * pl.cpc) * pl.nb;
    const int left = pl.cgp / 8 - m.n0;
    m.nt = left < pl.nb ? left : pl.nb;
    return m;
  }
  // Where the A fragments come from: the raw stage (forward) or the converted A tile (input grad).
  CNNKERN_HD const T* a_src(unsigned char* smem, int buf) const {
    return kDgrad ? reinterpret_cast<const T*>(smem + pl.off_x) : raw_at(smem, buf);
  }
  // A: pixel rows, this group's channels. Forward: of the raw slab, zero past cg_in (the next group's
  // channels, or past the row's end, are never read). Input grad: of the A tile, zero-padded to kpad.
  CNNKERN_HD void a_frag(const T* raw, const MmaItem& m, int kb, int lane, uint32_t a[4]) const {
    const int gid = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int row = m.mt * 16 + gid + 8 * (q & 1), k = kb * 16 + 2 * tig + 8 * (q >> 1);
      if constexpr (kDgrad) {
        a[q] = *reinterpret_cast<const uint32_t*>(raw + row * pl.ldx + m.g * pl.kpad + k);
      } else {
        a[q] = k < p.s.cg_in ? *reinterpret_cast<const uint32_t*>(raw + row * pl.ldr + m.g * p.s.cg_in + k) : 0u;
      }
    }
  }
  CNNKERN_HD void b_frag(const T* wt, const MmaItem& m, int nt, int kb, int lane, uint32_t b[2]) const {
    const int gid = lane >> 2, tig = lane & 3;
    const int col = m.g * pl.cgp + (m.n0 + nt) * 8 + gid;
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      b[q] = *reinterpret_cast<const uint32_t*>(wt + col * pl.kw + kb * 16 + 2 * tig + 8 * q);
    }
  }
  CNNKERN_HD void mma_epilogue(unsigned char* smem, const MmaItem& m, int nt, int lane, const float c[4]) const {
    const Smem sm = carve(smem);
    const int gid = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int col = m.g * pl.cgp + (m.n0 + nt) * 8 + 2 * tig + j;
      const int d = sm.odst[col];
      if (d < 0) continue;
      const float b = sm.bias[col], sc = sm.scale[col], sh = sm.shift[col];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float v = c[2 * h + j];
        v += b;
        v *= sc;
        v += sh;
        if (p.relu && v < 0.0f) v = 0.0f;
        sm.o[(m.mt * 16 + gid + 8 * h) * pl.ldo + d] = Num<T>::from_float(v);
      }
    }
  }

#if defined(__CUDACC__)
  __device__ __forceinline__ static void mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
#else
    __trap();  // the plan never picks mma below sm_80 builds of 16-bit types (check_dtype_tensor_cores)
#endif
  }

  // The warp's share of the compute phase on the device (the emulator drives the same fragment and
  // epilogue functions lane by lane, with a host m16n8k16).
  __device__ void compute_mma_device(unsigned char* smem, int buf, int warp, int lane) const {
    const Smem sm = carve(smem);
    const T* raw = a_src(smem, buf);
    const int items = mma_items(), ksteps = pl.kpad / 16;
    for (int it = warp; it < items; it += kThreads / 32) {
      const MmaItem m = mma_item(it);
      float acc[8][4];
#pragma unroll
      for (int n = 0; n < 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[n][i] = 0.0f;
      for (int kb = 0; kb < ksteps; ++kb) {
        uint32_t a[4];
        a_frag(raw, m, kb, lane, a);
#pragma unroll
        for (int n = 0; n < 8; ++n) {
          if (n < m.nt) {
            uint32_t b[2];
            b_frag(sm.wt, m, n, kb, lane, b);
            mma16816(acc[n], a, b);
          }
        }
      }
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        if (n < m.nt) mma_epilogue(smem, m, n, lane, acc[n]);
      }
    }
  }
#endif

  // The CTA schedule, shared by the kernel and the emulator. Exec provides phase(f) (run f(t) for every
  // thread t of the block), barrier() and wait(pending) (the cp.async wait of every thread).
  // Exec also provides mma_phase(k, smem, buf): the warps' mma compute.
  // FMA, one raw stage: the copy of the next tile is issued right after the barrier that ends this
  // tile's convert (nothing reads raw after it), and overlaps this tile's compute and store.
  // mma, two raw stages: tile i is read from raw[i & 1] by the compute; the next copy goes to the other
  // stage, which the compute of tile i-1 finished reading before the barrier that preceded its store.
  // Input grad (mma or FMA): the FMA schedule, the compute reading the converted tile.
  // (Exec is host-only in the emulator and device-only in the kernel.)
#pragma nv_exec_check_disable
  template <class Exec>
  CNNKERN_HD void run_cta(Exec& ex, unsigned char* smem, int cta, int nctas) const {
    ex.phase([&](int t) { setup(smem, t); });
    int tile = cta;
    if (tile < pl.tiles) ex.phase([&](int t) { issue(smem, tile, 0, t); });
    for (int i = 0; tile < pl.tiles; ++i, tile += nctas) {
      const int next = tile + nctas;
      ex.wait(0);
      ex.barrier();
      if constexpr (kMma && !kDgrad) {
        const int buf = i & 1;
        if (pl.pass) {  // (one passthrough stage: placed before the next tile's copy refills it)
          ex.phase([&](int t) { place_pass(smem, tile, t); });
          ex.barrier();
        }
        if (next < pl.tiles) ex.phase([&](int t) { issue(smem, next, buf ^ 1, t); });
        ex.mma_phase(*this, smem, buf);
      } else {
        ex.phase([&](int t) {
          convert(smem, tile, t);
          place_pass(smem, tile, t);
        });
        ex.barrier();
        if (next < pl.tiles) ex.phase([&](int t) { issue(smem, next, 0, t); });
        if constexpr (kMma) {
          ex.mma_phase(*this, smem, 0);
        } else {
          ex.phase([&](int t) { compute(smem, t); });
        }
      }
      ex.barrier();
      ex.phase([&](int t) { store(smem, tile, t); });
    }
  }
};

#if defined(__CUDACC__)
struct GpwSmallKDeviceExec {
  template <class F>
  __device__ __forceinline__ void phase(F&& f) {
    f(static_cast<int>(threadIdx.x));
  }
  __device__ __forceinline__ void barrier() { __syncthreads(); }
  __device__ __forceinline__ void wait(int) { gpw_async_wait_all(); }
  template <class K>
  __device__ __forceinline__ void mma_phase(const K& k, unsigned char* smem, int buf) {
    k.compute_mma_device(smem, buf, static_cast<int>(threadIdx.x) >> 5, static_cast<int>(threadIdx.x) & 31);
  }
};

template <class T, int RC, bool kDgrad>
__global__ void __launch_bounds__(kGpwSmallKThreads, 2) gpw_smallk_kernel(const GpwSmallK<T, RC, kDgrad> k) {
  extern __shared__ __align__(16) unsigned char gpw_smem[];
  GpwSmallKDeviceExec ex;
  k.run_cta(ex, gpw_smem, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x));
}
#endif

}  // namespace cnnkern
