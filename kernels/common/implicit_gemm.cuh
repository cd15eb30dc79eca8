// The one tiled GEMM mainloop shared by conv forward, input-grad and weight-grad.
//
// C[m][n] = sum_k A[m][k] * B[k][n] over a per-blockIdx.z K range, where A, B and the store of C are
// supplied by a Problem policy:
//
//   struct Problem {
//     using Element = T;                                   // float, __half or __nv_bfloat16
//     static constexpr Fast kAFast, kBFast;                // thread mapping of each operand gather
//     static constexpr int kAVec, kBVec;                   // elements per access (1, or 16 bytes)
//     using OperandA, OperandB, Epilogue;                  // device-side views, see below
//     int gemm_m() const, gemm_n() const;                  // GEMM extents (same for every z)
//     KRange k_range(int z) const;                         // [begin, end), begin multiple of kBK
//     OperandA operand_a(int z) const; OperandB operand_b(int z) const; Epilogue epilogue(int z) const;
//   };
//   Operand: Row row(int r) const;  Kc kc(int k) const;  Vec<T,V> load<V>(Row, Kc) const
//            -- row(r) / kc(k) must accept out-of-range indices and mark them invalid; load returns
//               zeros for invalid or padded elements (nothing outside a tensor is ever dereferenced).
//            Optional, for the cp.async route of 16-byte gathers (gemm_loader.cuh):
//              const T* addr(Row, Kc, bool& valid) const  -- where load<V> would read (valid), or any
//                  dereferenceable address with valid = false where load<V> returns zeros;
//              bool copyable() const  -- load<V> is a plain copy of those bytes (no mask, no scale).
//   Epilogue: bool m_fast() const;  void store(int m, int n, float v) const   (only m<M, n<N called)
//     Optional (gemm_epilogue.cuh's EpiRun): Row row(int m) const (m's decomposition, once per thread) and
//     void store_run(const Row&, int n0, int count, float (&v)[kEpiRun]) const storing v[0..count) at
//     n0.. (one 16-byte store where the output allows it), with v replaced by the values as stored.
//
// A Problem with `static constexpr bool kStats = true` also gets the statistics epilogue: its store returns
// the value as stored (fp32 of the rounded T) and it has
//   void put_stats(int tile, int n, float count, float mean, float m2) const
// which receives, per column n of the block's tile (tile = blockIdx.x), the count, mean and M2 of the
// stored values of the tile's valid rows, computed in two passes over the tile (mean first, then the
// squared deviations) so that a column whose mean is far above its spread keeps its variance in fp32.
//
// The mainloop is written as per-thread phases (GemmBlock) separated by block barriers, so the host
// emulator in kernels/check/ can replay exactly the same phases thread by thread on the CPU.
#pragma once

#include <type_traits>

#include "common/fastdiv.cuh"
#include "common/gemm_epilogue.cuh"
#include "common/gemm_loader.cuh"
#include "common/gemm_math.cuh"

namespace cnnkern {

struct KRange {
  int begin;
  int end;
};

// Problem::kStats, false when the policy does not declare it.
template <class P, class = void>
struct GemmHasStats : std::false_type {};
template <class P>
struct GemmHasStats<P, std::void_t<decltype(P::kStats)>> : std::bool_constant<P::kStats> {};

template <class Problem, class Math>
struct GemmBlock {
  using T = typename Problem::Element;
  using Tile = typename Math::Tile;  // GemmTile<T>, or GemmTileBig<T> (MmaMath<T, GemmTileBig<T>>)
  using OpA = typename Problem::OperandA;
  using OpB = typename Problem::OperandB;
  using Epi = typename Problem::Epilogue;
  using LoaderA = TileLoader<OpA, Tile, Tile::kBM, Problem::kAFast, Problem::kAVec>;
  using LoaderB = TileLoader<OpB, Tile, Tile::kBN, Problem::kBFast, Problem::kBVec>;
  static constexpr int kStages = Tile::kStages;
  // The pipeline schedule, shared by implicit_gemm_kernel and the host replay (so that the replay checks
  // the kernel's buffer protocol, not a copy of it):
  //   cp.async groups allowed in flight at the top of iteration t (tile t must have landed),
  static constexpr int kWaitDepth = kStages - 2;
  //   the tile issued/fetched in iteration t, and the stage buffer that holds tile t.
  CNNKERN_HD static constexpr int prefetch_tile(int t) { return t + kStages - 1; }
  CNNKERN_HD static constexpr int buffer(int tile) { return tile % kStages; }

  // Minimum resident blocks per SM for __launch_bounds__ (the register cap ptxas works to):
  //   fp32 (SimtMath), and 16-bit with both operands on cp.async only: 0 = no minimum, as if omitted.
  //     ptxas' own choice is then 80 registers for the 16-bit conv forward (3 blocks/SM; sass_rules
  //     checks it) and 80-96 for fp32. An explicit 1 made it take 102 in the forward, and 3 (cap 80)
  //     made it spill 8 bytes there.
  //   16-bit with a register-route operand: 2, <= 128 registers. Uncapped, ptxas spent 150-172 on the
  //     dgrad / grouped-pointwise wgrad gathers (1 block/SM).
  //   the 128x128 tile (GemmTileBig): 2, the occupancy its 96 KiB of stages allow.
  static constexpr int kMinBlocks =
      Tile::kBN * Tile::kBM > 128 * 64 ? 2
                                       : (sizeof(T) == 4 || (LoaderA::kAsyncOnly && LoaderB::kAsyncOnly) ? 0 : 2);

  OpA a_;
  OpB b_;
  Epi epi_;
  LoaderA load_a_;
  LoaderB load_b_;
  Math math_;
  int tid_ = 0;
  int m0_ = 0;
  int n0_ = 0;
  int gemm_m_ = 0;
  int gemm_n_ = 0;
  int k_begin_ = 0;
  int num_k_tiles_ = 0;

  CNNKERN_HD void init(const Problem& p, int bx, int by, int bz, int tid) {
    tid_ = tid;
    m0_ = bx * Tile::kBM;
    n0_ = by * Tile::kBN;
    gemm_m_ = p.gemm_m();
    gemm_n_ = p.gemm_n();
    const KRange kr = p.k_range(bz);
    k_begin_ = kr.begin;
    num_k_tiles_ = kr.end > kr.begin ? (kr.end - kr.begin + Tile::kBK - 1) / Tile::kBK : 0;
    a_ = p.operand_a(bz);
    b_ = p.operand_b(bz);
    load_a_.init(a_, tid, m0_);
    load_b_.init(b_, tid, n0_);
    math_.init(tid);
  }

  // The epilogue's view is built after the mainloop (kernel and replay both call this after stash()):
  // what it derives from blockIdx.z (output and bias bases, the group's first channel) otherwise stays
  // live in registers across the k loop -- the act epilogue's 4-byte spill at 80 registers was that.
  CNNKERN_HD void begin_epilogue(const Problem& p, int bz) { epi_ = p.epilogue(bz); }

  CNNKERN_HD static T* stage_a(unsigned char* smem, int buf) {
    return reinterpret_cast<T*>(smem) + buf * Tile::kStageElems;
  }
  CNNKERN_HD static T* stage_b(unsigned char* smem, int buf) { return stage_a(smem, buf) + Tile::kAElems; }

  // cp.async of K tile t (relative to this block's K range) into stage buf for the operands on the async
  // route, then ONE commit group per call whether or not tile t exists (t < 0: nothing to copy), so
  // that the group count per iteration is uniform and wait_group<kWaitDepth> always means "tile t
  // has landed".
  CNNKERN_HD void issue(unsigned char* smem, int t, int buf) const {
    if (t >= 0) {
      const int k_base = k_begin_ + t * Tile::kBK;
      load_a_.issue(a_, k_base, stage_a(smem, buf));
      load_b_.issue(b_, k_base, stage_b(smem, buf));
    }
    cp_async_commit();
  }

  // global -> registers for K tile t (register route)
  CNNKERN_HD void fetch(int t) {
    const int k_base = k_begin_ + t * Tile::kBK;
    load_a_.fetch(a_, k_base);
    load_b_.fetch(b_, k_base);
  }

  // registers -> shared stage buf (register route)
  CNNKERN_HD void stage(unsigned char* smem, int buf) const {
    load_a_.stage(stage_a(smem, buf));
    load_b_.stage(stage_b(smem, buf));
  }

  CNNKERN_HD void compute(unsigned char* smem, int buf) { math_.compute(stage_a(smem, buf), stage_b(smem, buf)); }

  // accumulators -> Cs[n][m] (aliases the stages: only after the last compute barrier)
  CNNKERN_HD void stash(unsigned char* smem) const { math_.stash(reinterpret_cast<float*>(smem)); }

  // Cs -> output, each in-range element by exactly one thread. Each thread owns ONE row ml = tid % kBM
  // (its decomposition is computed once) and runs of kEpiRun consecutive columns: a warp's Cs reads are
  // 32 consecutive m of one n (conflict-free with c_off's swizzle); its stores are 32 pixels x one run,
  // coalesced along m for a pixel-fast output and one 16-byte vector per lane for a channel-fast one
  // (EpiRun). With statistics, the value as stored replaces the accumulator in Cs (same thread).
  static constexpr int kRunStep = Tile::kThreads / Tile::kBM;
  static constexpr int kRuns = Tile::kBN / kEpiRun;
  static_assert(Tile::kThreads % Tile::kBM == 0 && kRuns % kRunStep == 0, "epilogue runs");
  CNNKERN_HD void write(unsigned char* smem) const {
    float* cs = reinterpret_cast<float*>(smem);
    const int ml = tid_ % Tile::kBM;
    const int m = m0_ + ml;
    if (m >= gemm_m_) return;
    const typename EpiRun<Epi>::Row row = EpiRun<Epi>::row(epi_, m);
#pragma unroll
    for (int i = 0; i < kRuns / kRunStep; ++i) {
      const int nl0 = (tid_ / Tile::kBM + i * kRunStep) * kEpiRun;
      const int n0 = n0_ + nl0;
      if (n0 < gemm_n_) {
        const int count = gemm_n_ - n0 < kEpiRun ? gemm_n_ - n0 : kEpiRun;
        float v[kEpiRun];
#pragma unroll
        for (int j = 0; j < kEpiRun; ++j) v[j] = cs[Tile::c_off(nl0 + j, ml)];
        EpiRun<Epi>::store_run(epi_, row, m, n0, count, v);
        if constexpr (kStats) {
#pragma unroll
          for (int j = 0; j < kEpiRun; ++j)
            if (j < count) cs[Tile::c_off(nl0 + j, ml)] = v[j];
        }
      }
    }
  }

  // ---- statistics epilogue (Problem::kStats), after write() and a barrier.
  // Four threads per column nl = tid / 4 of Cs[n][m], thread `part` = tid % 4 over rows part, part + 4, ...
  // (a warp's 32 reads then fall in 32 banks); the four partial sums meet in the 4 padding floats at the
  // end of the column's Cs row (kLdC - kBM of them), so no shared memory is added.
  static constexpr bool kStats = GemmHasStats<Problem>::value;
  static constexpr int kStatParts = 4;
  static_assert(!kStats || (Tile::kBN * kStatParts == Tile::kThreads && Tile::kLdC - Tile::kBM >= kStatParts &&
                            Tile::kBM % kStatParts == 0),
                "statistics epilogue: four threads per column, combined in the Cs row padding");
  float stat_mean_ = 0.0f;
  float stat_m2_ = 0.0f;

  CNNKERN_HD int stat_rows() const { return gemm_m_ - m0_ < Tile::kBM ? gemm_m_ - m0_ : Tile::kBM; }
  // Row nl of Cs: element ml at cs[Tile::c_off(nl, ml)], the partials at its padding, cs + nl*kLdC + kBM.
  CNNKERN_HD float* stat_col(unsigned char* smem) const {
    return reinterpret_cast<float*>(smem) + (tid_ / kStatParts) * Tile::kLdC;
  }
  CNNKERN_HD float stat_at(unsigned char* smem, int ml) const {
    return reinterpret_cast<const float*>(smem)[Tile::c_off(tid_ / kStatParts, ml)];
  }

  // Pass 1: partial sums of the column's stored values.
  CNNKERN_HD void stats_sum(unsigned char* smem) const {
    float* col = stat_col(smem);
    const int part = tid_ % kStatParts, rows = stat_rows();
    float s = 0.0f;
    for (int ml = part; ml < rows; ml += kStatParts) s += stat_at(smem, ml);
    col[Tile::kBM + part] = s;
  }

  // The column mean (the four partials in a fixed order), then pass 2: squared deviations from it.
  CNNKERN_HD void stats_center(unsigned char* smem) {
    const float* col = stat_col(smem);
    const int part = tid_ % kStatParts, rows = stat_rows();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kStatParts; ++i) total += col[Tile::kBM + i];
    stat_mean_ = total / static_cast<float>(rows);
    float m2 = 0.0f;
    for (int ml = part; ml < rows; ml += kStatParts) {
      const float d = stat_at(smem, ml) - stat_mean_;
      m2 += d * d;
    }
    stat_m2_ = m2;
  }

  // After a barrier (every thread has read the pass-1 partials): the pass-2 partials take their place.
  CNNKERN_HD void stats_put_m2(unsigned char* smem) const { stat_col(smem)[Tile::kBM + tid_ % kStatParts] = stat_m2_; }

  CNNKERN_HD void stats_store(unsigned char* smem) const {
    const int nl = tid_ / kStatParts;
    if (tid_ % kStatParts != 0 || n0_ + nl >= gemm_n_) return;
    const float* col = stat_col(smem);
    float m2 = 0.0f;
#pragma unroll
    for (int i = 0; i < kStatParts; ++i) m2 += col[Tile::kBM + i];
    epi_.put_stats(m0_ / Tile::kBM, n0_ + nl, static_cast<float>(stat_rows()), stat_mean_, m2);
  }
};

// One block computes one kBM x kBN tile of C for the K range of blockIdx.z.
// kStages-deep pipeline with one barrier per K tile. At the top of iteration t tile t is complete
// (cp.async wait_group + barrier; register-route stores happened before an earlier barrier); then
// tile t + kStages - 1 is issued (cp.async) / fetched (registers) into the buffer of tile t - 1, which
// every thread finished reading before this iteration's barrier, the math runs on buffer t % kStages,
// and the fetched registers are stored behind it. fp32 (2 stages, register route only) is the old
// register double buffer.
// Tile: GemmTile<T> (static shared memory) or GemmTileBig<T> (dynamic: launch with Tile::kSmemBytes).
template <class Problem, class Tile = GemmTile<typename Problem::Element>>
__global__ void __launch_bounds__(Tile::kThreads,
                                  GemmBlock<Problem, typename DeviceMath<typename Problem::Element, Tile>::type>::kMinBlocks)
    implicit_gemm_kernel(const Problem problem) {
  using T = typename Problem::Element;
  if constexpr (CNNKERN_DEVICE_ARCH >= DeviceMath<T, Tile>::kMinArch) {
    using Block = GemmBlock<Problem, typename DeviceMath<T, Tile>::type>;
    constexpr int S = Block::kStages;
    unsigned char* smem;
    if constexpr (Tile::kDynamicSmem) {
      extern __shared__ __align__(128) unsigned char gemm_dynamic_smem[];
      smem = gemm_dynamic_smem;
    } else {
      __shared__ __align__(128) unsigned char gemm_static_smem[Tile::kSmemBytes];
      smem = gemm_static_smem;
    }

    Block blk;
    blk.init(problem, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x);
    const int nt = blk.num_k_tiles_;
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
      blk.issue(smem, s < nt ? s : -1, Block::buffer(s));
      if (s < nt) {
        blk.fetch(s);
        blk.stage(smem, Block::buffer(s));
      }
    }
    for (int t = 0; t < nt; ++t) {
      cp_async_wait<Block::kWaitDepth>();
      __syncthreads();
      const int next = Block::prefetch_tile(t);
      const bool more = next < nt;
      const int next_buf = Block::buffer(next);
      blk.issue(smem, more ? next : -1, next_buf);
      if (more) blk.fetch(next);
      blk.compute(smem, Block::buffer(t));
      if (more) blk.stage(smem, next_buf);
    }
    cp_async_wait<0>();
    __syncthreads();
    blk.stash(smem);
    blk.begin_epilogue(problem, blockIdx.z);
    __syncthreads();
    blk.write(smem);
    if constexpr (Block::kStats) {
      __syncthreads();
      blk.stats_sum(smem);
      __syncthreads();
      blk.stats_center(smem);
      __syncthreads();
      blk.stats_put_m2(smem);
      __syncthreads();
      blk.stats_store(smem);
    }
  } else {
    // Built for an architecture without the required tensor-core path; the host refuses to launch.
    __trap();
  }
}

}  // namespace cnnkern
