// Grouped 1x1 weight gradient for channels_last problems with short per-group products (ShuffleNet), at the
// memory-bandwidth limit instead of the GEMM's split-K (whose 128 x 64 tiles hold a 72 x 20 product and whose
// A gather goes element by element through the shuffle and the ReLU mask):
//
//   dw[g * cg_out + j][i] = scale[g * cg_out + j] * sum over pixels p of G[p][g * cg_out + j] * x[p][g * cg_in + i]
//   with G[p][c] = dy[p][dest(c)], zero where the saved output there is not positive.
//
//   * CTA = split: a contiguous range of P-pixel tiles (plan_gpw_smallk_wgrad; a fixed split count, so the
//     bits do not depend on the GPU). Per tile, dy's (and the mask's) P x total slab and x's P x C_in slab
//     are copied by 16-byte cp.async (element loads for strided or misaligned views), the next tile's copy
//     in flight while this one is computed;
//   * convert: both slabs are transposed into pixel-contiguous tiles, GT[g * mpad + j][p] (gathered through
//     the inverse shuffle, masked; other convs' columns go to a trash row) and XT[g * npad + i][p], so that
//     both mma.sync m16n8k16 operands (A = GT: M = cg_out, K = pixels; B = XT^T: K = pixels, N = cg_in) are
//     K-contiguous and load by ldmatrix.x4 without .trans; pixels past the problem's end are written as zeros
//     (K padding);
//   * each warp owns up to kGpwWgradItems items (one 16-row m-tile x up to kGpwWgradItemN 8-column n-tiles of
//     one group's product: one A fragment per k-step for all of them) for the whole split, in fp32 registers;
//     at the end they are written, times the scale, as the split's fp32 partials, which conv2d's
//     Conv2dWgradReduce sums in a fixed order (deterministic, as the GEMM's split-K).
//
// One schedule (run_cta) for the device kernel and the emulator (kernels/check/emulate_group_pointwise_conv2d.cu).
#pragma once

#include <cstdint>

#include "common/numeric.cuh"
#include "conv/group_pointwise_conv2d_params.cuh"
#include "conv/group_pointwise_conv2d_smallk.cuh"

namespace cnnkern {

template <class T>
struct GpwSmallKWgrad {
  static_assert(sizeof(T) == 2, "mma.sync takes 16-bit operands");
  static constexpr int kThreads = kGpwSmallKThreads;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kItems = kGpwWgradItems;
  static constexpr int kItemN = kGpwWgradItemN;

  GpwWgradParams<T> p;
  GpwWgradPlan pl;
  int pixels;

  __host__ static GpwSmallKWgrad make(const GpwWgradParams<T>& prm, const GpwWgradPlan& plan) {
    GpwSmallKWgrad k;
    k.p = prm;
    k.pl = plan;
    k.pixels = prm.s.pixels();
    return k;
  }

  struct Smem {
    T* raw;    // dy slab, P x total
    T* mraw;   // saved output slab (ReLU mask), P x total
    T* xraw;   // x slab, P x C_in
    T* gt;     // GT[g * mpad + j][p], + the trash row
    T* xt;     // XT[g * npad + i][p]
    int* gcol;  // dy column d -> GT row
    int* xrow;  // x channel c -> XT row
  };
  CNNKERN_HD Smem carve(unsigned char* base) const {
    Smem m;
    m.raw = reinterpret_cast<T*>(base + pl.off_raw);
    m.mraw = reinterpret_cast<T*>(base + pl.off_mraw);
    m.xraw = reinterpret_cast<T*>(base + pl.off_xraw);
    m.gt = reinterpret_cast<T*>(base + pl.off_gt);
    m.xt = reinterpret_cast<T*>(base + pl.off_xt);
    m.gcol = reinterpret_cast<int*>(base + pl.off_gcol);
    m.xrow = reinterpret_cast<int*>(base + pl.off_xrow);
    return m;
  }
  CNNKERN_HD int rows_of(int tile) const {
    const int left = pixels - tile * pl.tile_p;
    return left < pl.tile_p ? left : pl.tile_p;
  }
  CNNKERN_HD int first_tile(int split) const { return split * pl.tiles_per_split; }
  CNNKERN_HD int end_tile(int split) const {
    const int e = (split + 1) * pl.tiles_per_split;
    return e < pl.tiles ? e : pl.tiles;
  }

  // Once per CTA: the inverse shuffle (dy column d holds conv channel shuffle_source(d)) and x's rows. GT / XT
  // stay unwritten in their padding rows (j >= cg_out, i >= cg_in): those only reach accumulator rows /
  // columns that store_partial drops (an mma output row depends on its A row alone, a column on its B column
  // alone), so stale or NaN bytes there change no stored value.
  CNNKERN_HD void setup(unsigned char* smem, int t) const {
    const Smem m = carve(smem);
    const GpwShape& s = p.s;
    for (int d = t; d < s.total; d += kThreads) {
      const int c = shuffle_source(d, s.total, s.shuffle_groups, s.offset);
      m.gcol[d] = c >= 0 && c < s.c_out ? (c / s.cg_out) * pl.mpad + c % s.cg_out : pl.trash_row;
    }
    for (int c = t; c < s.c_in; c += kThreads) m.xrow[c] = (c / s.cg_in) * pl.npad + c % s.cg_in;
  }

  // The tile's slabs (packed stages), one commit group.
  CNNKERN_HD void issue(unsigned char* smem, int tile, int t) const {
    const Smem m = carve(smem);
    const int rows = rows_of(tile), total = p.s.total, c_in = p.s.c_in;
    const int64_t p0 = static_cast<int64_t>(tile) * pl.tile_p;
    const bool dense = pl.in_mode == kGpwInDense16;
    gpw_copy_slab(m.raw, total, p.dy, pl.dy_pitch, total, p0, rows, dense, pl.div_dy, t);
    if (p.out != nullptr) gpw_copy_slab(m.mraw, total, p.out, pl.m_pitch, total, p0, rows, dense, pl.div_dy, t);
    gpw_copy_slab(m.xraw, c_in, p.x, pl.x_pitch, c_in, p0, rows, dense, pl.div_x, t);
    gpw_async_commit();
  }

  // Slab (P x width, packed) -> dst[map[d] * ldp + r]. A step takes CH elements of two consecutive pixel rows
  // (r, r + 1) of the same columns and stores each column's pair as one 32-bit word (r even, ldp even);
  // pixels r >= rows (past the problem's end) become zeros, as do elements whose mask is not positive (a NaN
  // output masks). (kMask a template argument and `&` rather than `&&`: each choice is a select, not a branch.)
  template <int CH, bool kMask>
  CNNKERN_HD void transpose_in(const T* src, const T* msrc, int width, const int* map, T* dst,
                               const FastDivmod& div_steps, int rows, int t) const {
    const int steps = pl.tile_p / 2 * (width / CH);
    for (int st = t; st < steps; st += kThreads) {
      uint32_t rp, dq;
      div_steps.divmod(static_cast<uint32_t>(st), rp, dq);
      const int r = 2 * static_cast<int>(rp), d = static_cast<int>(dq) * CH;
      const int e0 = r * width + d, e1 = e0 + width;
      const Vec<T, CH> v0 = Vec<T, CH>::load(src + e0), v1 = Vec<T, CH>::load(src + e1);
      Vec<T, CH> m0, m1;
      if constexpr (kMask) {
        m0 = Vec<T, CH>::load(msrc + e0);
        m1 = Vec<T, CH>::load(msrc + e1);
      }
      int row[CH];
      gpw_load_map<CH>(map + d, row);
      const bool live0 = r < rows, live1 = r + 1 < rows;
#pragma unroll
      for (int j = 0; j < CH; ++j) {
        bool keep0 = live0, keep1 = live1;
        if constexpr (kMask) {
          keep0 = keep0 & (Num<T>::to_float(m0.v[j]) > 0.0f);
          keep1 = keep1 & (Num<T>::to_float(m1.v[j]) > 0.0f);
        }
        Vec<T, 2> pair;
        pair.v[0] = keep0 ? v0.v[j] : Num<T>::zero();
        pair.v[1] = keep1 ? v1.v[j] : Num<T>::zero();
        *reinterpret_cast<Vec<T, 2>*>(dst + row[j] * pl.ldp + r) = pair;
      }
    }
  }
  template <int CH>
  CNNKERN_HD void transpose_dy(const Smem& m, int rows, int t) const {
    if (p.out != nullptr) {
      transpose_in<CH, true>(m.raw, m.mraw, p.s.total, m.gcol, m.gt, pl.div_dy_steps, rows, t);
    } else {
      transpose_in<CH, false>(m.raw, nullptr, p.s.total, m.gcol, m.gt, pl.div_dy_steps, rows, t);
    }
  }
  template <int CH>
  CNNKERN_HD void transpose_x(const Smem& m, int rows, int t) const {
    transpose_in<CH, false>(m.xraw, nullptr, p.s.c_in, m.xrow, m.xt, pl.div_x_steps, rows, t);
  }
  CNNKERN_HD void convert(unsigned char* smem, int tile, int t) const {
    const Smem m = carve(smem);
    const int rows = rows_of(tile);
    switch (pl.ch_dy) {
      case 8: transpose_dy<8>(m, rows, t); break;
      case 4: transpose_dy<4>(m, rows, t); break;
      case 2: transpose_dy<2>(m, rows, t); break;
      default: transpose_dy<1>(m, rows, t);
    }
    switch (pl.ch_x) {
      case 8: transpose_x<8>(m, rows, t); break;
      case 4: transpose_x<4>(m, rows, t); break;
      case 2: transpose_x<2>(m, rows, t); break;
      default: transpose_x<1>(m, rows, t);
    }
  }

  // ---- mma.sync: item = (group, m-tile, n-chunk); warp w owns items w + kWarps * slot ----
  // Layouts as in GpwSmallK (PTX ISA m16n8k16): A reg q row gid + 8 (q & 1), k 2 tig + 8 (q >> 1); B reg q
  // k 2 tig + 8 q, col gid; C c[i] row gid + 8 (i >> 1), col 2 tig + (i & 1). Here A rows are GT rows
  // (output channels), B columns XT rows (input channels), k pixels of the tile.
  struct Item {
    int g, mt, n0, ntc;  // group, m-tile, first n-tile, n-tiles (<= kItemN)
  };
  CNNKERN_HD bool item_of(int warp, int slot, Item& it) const {
    const int id = warp + kWarps * slot;
    if (id >= pl.items) return false;
    uint32_t g, rem, mt, ch;
    pl.div_item.divmod(static_cast<uint32_t>(id), g, rem);
    pl.div_chunks.divmod(rem, mt, ch);
    it.g = static_cast<int>(g);
    it.mt = static_cast<int>(mt);
    it.n0 = static_cast<int>(ch) * pl.nb;
    const int left = pl.nt - it.n0;
    it.ntc = left < pl.nb ? left : pl.nb;
    return true;
  }
  // Fragments by ldmatrix.x4 (both tiles are K-contiguous, so no .trans): lane l gives the row address of
  // 8x8 matrix q = l / 8, row l % 8; register q of lane l receives row l / 4 of matrix q, elements 2 (l % 4)
  // and +1. A's quadrants in the order (m0, k0) (m8, k0) (m0, k8) (m8, k8) are a0..a3; B's (n, k0) (n, k8)
  // (n + 1, k0) (n + 1, k8) are (b0, b1) of n-tiles n and n + 1. Rows are ldp = P + 8 elements (P % 16 == 0:
  // 16-byte aligned, and 8 consecutive rows fall in 8 distinct 16-byte bank groups). Element offsets at k-step 0;
  // a k-step adds kb * 16. XT has 8 spare rows, so an item's odd last n-tile may load a pair.
  CNNKERN_HD int a_row(const Item& it, int lane) const {
    const int q = lane >> 3, r = lane & 7;
    return (it.g * pl.mpad + it.mt * 16 + r + ((q & 1) << 3)) * pl.ldp + ((q >> 1) << 3);
  }
  CNNKERN_HD int b_row(const Item& it, int pair, int lane) const {
    const int q = lane >> 3, r = lane & 7;
    return (it.g * pl.npad + (it.n0 + 2 * pair + (q >> 1)) * 8 + r) * pl.ldp + ((q & 1) << 3);
  }
  // n-tile n of an item: registers b_reg(n), +1 of ldmatrix pair b_pair(n) (loaded when b_reg(n) == 0).
  CNNKERN_HD static int b_pair(int n) { return n >> 1; }
  CNNKERN_HD static int b_reg(int n) { return (n & 1) << 1; }
  // The split's partial of n-tile n of an item, times the scale of its output channels.
  CNNKERN_HD void store_partial(int split, const Item& it, int n, int lane, const float c[4]) const {
    const GpwShape& s = p.s;
    const int gid = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = it.mt * 16 + gid + 8 * (i >> 1), ci = (it.n0 + n) * 8 + 2 * tig + (i & 1);
      if (j < s.cg_out && ci < s.cg_in) {
        const int co = it.g * s.cg_out + j;
        const float sc = p.scale.present() ? p.scale.template at<T>(co) : 1.0f;
        p.workspace[(static_cast<int64_t>(split) * s.c_out + co) * s.cg_in + ci] = c[i] * sc;
      }
    }
  }

#if defined(__CUDACC__)
  __device__ static void ldsm_x4(const T* ptr, uint32_t r[4]) {
#if __CUDA_ARCH__ >= 800
    const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(ptr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(sa));
#else
    __trap();  // (16-bit mma paths are sm_80+; the plan's callers check the device)
#endif
  }
  __device__ void mma_device(unsigned char* smem, int warp, int lane, float acc[kItems][kItemN][4]) const {
    static_assert(kItemN % 2 == 0, "n-tiles come in ldmatrix pairs");
    const Smem m = carve(smem);
    const int ksteps = pl.tile_p / 16;
#pragma unroll
    for (int s = 0; s < kItems; ++s) {
      Item it;
      if (!item_of(warp, s, it)) break;
      const T* pa = m.gt + a_row(it, lane);
      const T* pb[kItemN / 2];
#pragma unroll
      for (int q = 0; q < kItemN / 2; ++q) pb[q] = m.xt + b_row(it, q, lane);
      for (int kb = 0; kb < ksteps; ++kb) {
        uint32_t a[4], b[kItemN / 2][4];
        ldsm_x4(pa + kb * 16, a);
#pragma unroll
        for (int n = 0; n < kItemN; ++n) {
          if (n < it.ntc) {
            if (b_reg(n) == 0) ldsm_x4(pb[b_pair(n)] + kb * 16, b[b_pair(n)]);
            GpwSmallK<T, kGpwMma>::mma16816(acc[s][n], a, b[b_pair(n)] + b_reg(n));
          }
        }
      }
    }
  }
  __device__ void finish_device(int split, int warp, int lane, const float acc[kItems][kItemN][4]) const {
#pragma unroll
    for (int s = 0; s < kItems; ++s) {
      Item it;
      if (!item_of(warp, s, it)) break;
#pragma unroll
      for (int n = 0; n < kItemN; ++n) {
        if (n < it.ntc) store_partial(split, it, n, lane, acc[s][n]);
      }
    }
  }
#endif

  // The CTA schedule (kernel and emulator). Exec: phase(f), barrier(), wait(), mma_phase(k, smem) (the warps'
  // accumulation over this tile), finish(k, split) (the partials). One raw stage per slab: the next tile is
  // issued after the convert has read this one, and lands while the warps run the mma.
#pragma nv_exec_check_disable
  template <class Exec>
  CNNKERN_HD void run_cta(Exec& ex, unsigned char* smem, int split) const {
    ex.phase([&](int t) { setup(smem, t); });
    const int t0 = first_tile(split), t1 = end_tile(split);
    ex.phase([&](int t) { issue(smem, t0, t); });
    for (int tile = t0; tile < t1; ++tile) {
      ex.wait();
      ex.barrier();
      ex.phase([&](int t) { convert(smem, tile, t); });
      ex.barrier();
      if (tile + 1 < t1) ex.phase([&](int t) { issue(smem, tile + 1, t); });
      ex.mma_phase(*this, smem);
    }
    ex.finish(*this, split);
  }
};

#if defined(__CUDACC__)
struct GpwWgradDeviceExec {
  float acc[kGpwWgradItems][kGpwWgradItemN][4];
  __device__ GpwWgradDeviceExec() {
#pragma unroll
    for (int s = 0; s < kGpwWgradItems; ++s)
#pragma unroll
      for (int n = 0; n < kGpwWgradItemN; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[s][n][i] = 0.0f;
  }
  template <class F>
  __device__ __forceinline__ void phase(F&& f) {
    f(static_cast<int>(threadIdx.x));
  }
  __device__ __forceinline__ void barrier() { __syncthreads(); }
  __device__ __forceinline__ void wait() { gpw_async_wait_all(); }
  template <class K>
  __device__ __forceinline__ void mma_phase(const K& k, unsigned char* smem) {
    k.mma_device(smem, static_cast<int>(threadIdx.x) >> 5, static_cast<int>(threadIdx.x) & 31, acc);
  }
  template <class K>
  __device__ __forceinline__ void finish(const K& k, int split) {
    k.finish_device(split, static_cast<int>(threadIdx.x) >> 5, static_cast<int>(threadIdx.x) & 31, acc);
  }
};

template <class T>
__global__ void __launch_bounds__(kGpwSmallKThreads, 2) gpw_smallk_wgrad_kernel(const GpwSmallKWgrad<T> k) {
  extern __shared__ __align__(16) unsigned char gpw_wgrad_smem[];
  GpwWgradDeviceExec ex;
  k.run_cta(ex, gpw_wgrad_smem, static_cast<int>(blockIdx.x));
}
#endif

}  // namespace cnnkern
