// Forward conv2d implicit GEMM for sm_90a (issue 14, step 2): wgmma fed by a warp-specialized, multi-stage
// pipeline, persistent over output tiles. Design, arithmetic and predictions: common/implicit_gemm_sm90.md.
//
// GEMM as in conv2d_fwd.cuh: M = N*OH*OW pixels, N = C_out, K = KH*KW*C_in with k = (r, s, c), c inner.
// Scope (the host routes only these; everything else keeps the step-1 kernel): 16-bit types, one group,
// channels-last input with 16-byte aligned pixels, C_in % 64 == 0 (a 64-wide k tile is one tap's 64
// consecutive channels), C_out % 8 == 0, weight channels-last contiguous per output channel (a [C_out][K]
// row-major matrix with a 16-byte multiple row pitch), epilogues kPlain, kAct (bias, folded BN,
// activation) and kStats (plain + per-tile channel statistics, FwdStats). Any stride, padding and dilation.
//
// Block: 3 warpgroups (384 threads), one block per SM, grid = min(tiles, SMs), tiles n-fastest.
//   warpgroup 0, producer: per k tile and stage, waits 'empty', thread 0 arms 'full' with the B bytes and
//     issues one TMA of the weight box (64 k x BN rows, 128-byte swizzle); all 128 threads gather the A
//     tile (128 pixels x 64 channels) with 16-byte cp.async (zero-fill for padding / rows past M) into the
//     same swizzled layout, then one cp.async.mbarrier.arrive.noinc each on 'full'.
//   warpgroups 1, 2, consumers: rows 64*w .. 64*w+63 of the tile; per k tile wait 'full', 4 wgmma
//     m64nBNk16 (k16 steps = +32 bytes in the descriptors), commit, wait_group<1>, then release the PREVIOUS
//     k tile's stage (its wgmma have retired; Pipe::released_it) with one arrival per warp on 'empty'. After the tile:
//     wait_group<0>, release, and the epilogue straight from the accumulator registers to global memory
//     (a quad shuffle gives each lane 8 consecutive channels: one 16-byte store per run), while the
//     producer already fills the stages of the next tile.
// The body is run_warp_specialized (common/sm90/warp_specialized.cuh), shared with the weight gradient; this
// file holds the policy (FwdKernel) and its host-callable pieces (which copies, which descriptors, which
// output coordinates), which kernels/check/emulate_conv2d_sm90.cu replays with the model of the mbarriers,
// cp.async, TMA and wgmma operand fetch in check/emulate_sm90.cuh.
#pragma once

#include <cstdint>

#include "common/gemm_epilogue.cuh"
#include "common/gemm_loader.cuh"
#include "common/sm90/mbarrier.cuh"
#include "common/sm90/pipe.cuh"
#include "common/sm90/tma.cuh"
#include "common/sm90/warp_specialized.cuh"
#include "common/sm90/wgmma.cuh"
#include "conv/conv2d_fwd.cuh"

namespace cnnkern {
namespace sm90 {

template <int BN>
struct FwdTile {
  static constexpr int kBM = 128;
  static constexpr int kBN = BN;
  static constexpr int kBK = 64;  // 64 x 16-bit = one 128-byte swizzle row
  static constexpr int kElemBytes = 2;
  static constexpr int kConsumers = 2;  // warpgroups, 64 rows each
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kABytes = kBM * kBK * kElemBytes;  // 16 KiB
  static constexpr int kBBytes = kBN * kBK * kElemBytes;  // 16 KiB (BN 128) / 8 KiB (BN 64)
  static constexpr int kStageBytes = kABytes + kBBytes;
  // As many stages as fit next to each other well under the 227 KiB opt-in limit: 5 x 32 KiB (BN 128),
  // 7 x 24 KiB (BN 64). The A gather has L2 latency plus a cp.async hop, so depth is what hides it.
  static constexpr int kStages = BN == 128 ? 5 : 7;
  static constexpr int kBarrierBytes = 2 * kStages * 8;
  // + 1 KiB: the dynamic shared window is only guaranteed 16-byte aligned; the stages need 1024.
  static constexpr int kSmemBytes = kStages * kStageBytes + kBarrierBytes + kSw128AtomBytes;
  static constexpr int kAccRegs = BN / 2;  // fp32 accumulators per consumer thread
  static constexpr int kKSteps = kBK / 16;
  static constexpr int kTransA = 0, kTransB = 0;  // both operands K-major (wgmma imm-trans-a / -b)

  // Producer A mapping: thread pt takes chunk pt % 8 (channels 8*chunk..+8 of the k tile) of rows
  // pt / 8 + 16 i, i < 8; a warp covers 4 whole 128-byte rows (one pixel's 64 channels each) per pass.
  static constexpr int kProducerThreads = 128;
  static constexpr int kChunks = kBK * kElemBytes / 16;
  static constexpr int kARowStep = kProducerThreads / kChunks;
  static constexpr int kAPasses = kBM / kARowStep;

  // 'full': one noinc arrival per producer thread (its cp.asyncs landed) + thread 0's expect_tx arrival.
  static constexpr unsigned kFullCount = kProducerThreads + 1;
  // 'empty': one arrival per consumer warp.
  static constexpr unsigned kEmptyCount = kConsumers * 4;

  static_assert(BN == 64 || BN == 128, "wgmma wrappers exist for n64 and n128");
  static_assert(kStageBytes % kSw128AtomBytes == 0 && kABytes % kSw128AtomBytes == 0,
                "every operand tile starts on a 1024-byte swizzle atom");
  static_assert(kSmemBytes <= 227 * 1024, "sm_90 opt-in shared memory limit");
  static_assert(kBM == 64 * kConsumers, "one m64 slab per consumer warpgroup");
};

// Persistent tile scheduler: tile -> (m0, n0), n fastest, so that the few CTAs working on one pixel block
// run at the same time and read its activations from L2 once.
struct TileSched {
  int m_tiles, n_tiles, k_tiles;
  CNNKERN_HD int num_tiles() const { return m_tiles * n_tiles; }
  template <class Tile>
  CNNKERN_HD void coords(int tile, int& m0, int& n0) const {
    m0 = (tile / n_tiles) * Tile::kBM;
    n0 = (tile % n_tiles) * Tile::kBN;
  }
};

template <class T, EpiKind E, int BN>
struct FwdArgs {
  using Tile = FwdTile<BN>;
  using Problem = Conv2dFwdProblem<T, Fast::kK, 8, E>;
  using OpA = typename Problem::OperandA;
  using Epi = typename Problem::Epilogue;
  OpA a;
  Epi epi;
  int m, n, k;
  TileSched sched;

  __host__ static FwdArgs make(const Conv2dFwdParams<T>& p, bool out_m_fast) {
    const Problem pr = Problem::make(p, out_m_fast);
    FwdArgs r;
    r.a = pr.operand_a(0);
    r.epi = pr.epilogue(0);
    r.m = pr.m;
    r.n = pr.n;
    r.k = pr.k;
    r.sched = TileSched{(pr.m + Tile::kBM - 1) / Tile::kBM, (pr.n + Tile::kBN - 1) / Tile::kBN, pr.k / Tile::kBK};
    return r;
  }

  __host__ static Map2dGeometry weight_map(const Conv2dFwdParams<T>& p) {
    const Conv2dShape& s = p.s;
    Map2dGeometry g;
    g.dims[0] = static_cast<uint64_t>(s.kh) * s.kw * s.cg_in;
    g.dims[1] = static_cast<uint64_t>(s.cg_out);
    g.row_bytes = static_cast<uint64_t>(p.ws.n) * sizeof(T);
    g.box[0] = Tile::kBK;
    g.box[1] = Tile::kBN;
    return g;
  }
};

// The producer's A gather for one tile: the row decompositions once per tile, then per k tile the
// (destination byte offset in the stage's A tile, source, valid) of each of the thread's 16-byte copies.
template <class T, EpiKind E, int BN>
struct AProducer {
  using Args = FwdArgs<T, E, BN>;
  using Tile = typename Args::Tile;
  using OpA = typename Args::OpA;
  typename OpA::Row rows_[Tile::kAPasses];
  int pt_ = 0;

  CNNKERN_HD void init_tile(const OpA& op, int pt, int m0) {
    pt_ = pt;
#pragma unroll
    for (int i = 0; i < Tile::kAPasses; ++i) rows_[i] = op.row(m0 + pt / Tile::kChunks + i * Tile::kARowStep);
  }

  template <class F>
  CNNKERN_HD void for_each_copy(const OpA& op, int k_base, F&& f) const {
    const int chunk = pt_ % Tile::kChunks;
    const typename OpA::Kc kc = op.kc(k_base + chunk * (16 / Tile::kElemBytes));
#pragma unroll
    for (int i = 0; i < Tile::kAPasses; ++i) {
      const int row = pt_ / Tile::kChunks + i * Tile::kARowStep;
      bool valid;
      const T* src = op.addr(rows_[i], kc, valid);
      f(sw128_offset(row, chunk), src, valid);
    }
  }
};

// The weight's TMA box for the k tile at k_base of a tile at n0: its byte offset in the stage (the B tile)
// and its coordinates {k, output channel} in the [C_out][K] map.
template <class Tile>
CNNKERN_HD void fwd_b_box(int n0, int k_base, uint32_t& off, int& c0, int& c1) {
  off = static_cast<uint32_t>(Tile::kABytes);
  c0 = k_base;
  c1 = n0;
}

// Consumer warpgroup w's descriptors for k16 step kk of the stage at shared address `stage`.
template <class Tile>
CNNKERN_HD uint64_t a_desc(uint32_t stage, int w, int kk) {
  return sw128_desc(stage + static_cast<uint32_t>(w * 64 * kSw128RowBytes + kk * 32));
}
template <class Tile>
CNNKERN_HD uint64_t b_desc(uint32_t stage, int kk) {
  return sw128_desc(stage + static_cast<uint32_t>(Tile::kABytes + kk * 32));
}

// Accumulators of consumer thread t (of warpgroup w) -> the output through the conv epilogue.
// A thread holds, per n8 block, 2 adjacent channels of 2 pixels (acc_row of pairs 0 and 1). Four lanes of a
// quad (t & 3 = q) hold the 4 pairs of each n8 block of the same 2 pixels, so for every group of 4 n8
// blocks (jg) the quad transposes its pairs in 4 rounds of shuffles: in round r lane q offers its pair of
// block (q - r) & 3 (quad_send) and takes the pair lane (q + r) & 3 offers (quad_src), which is that
// lane's 2 channels of block q (quad_place). Then lane q owns 8 consecutive channels of block 4 jg + q
// and stores them with one conv-epilogue run (one 16-byte store for a channels-last output) instead of
// four 2-channel runs. Each thread's two pixels are decomposed once per tile.
template <class Tile>
CNNKERN_HD void quad_send(const float (&acc)[Tile::kAccRegs], int q, int h, int jg, int r, float& s0, float& s1) {
  const int jb = (q - r) & 3;
  s0 = 0.0f;
  s1 = 0.0f;
#pragma unroll
  for (int jj = 0; jj < 4; ++jj) {  // selects, not a dynamically indexed (local-memory) array
    if (jj == jb) {
      const int i = 4 * (4 * jg + jj) + 2 * h;
      s0 = acc[i];
      s1 = acc[i + 1];
    }
  }
}
CNNKERN_HD constexpr int quad_src(int q, int r) { return (q + r) & 3; }
CNNKERN_HD void quad_place(float (&v)[kEpiRun], int p, float r0, float r1) {
#pragma unroll
  for (int pp = 0; pp < 4; ++pp) {
    if (pp == p) {
      v[2 * pp] = r0;
      v[2 * pp + 1] = r1;
    }
  }
}

// xchg(s0, s1, src, h, jg, r, r0, r1): the quad shuffle (device: __shfl_sync from lane (lane & ~3) | src;
// the emulator: quad_send of the source lane for the same h, jg, r). Every lane runs every round
// (no early exits before the shuffles).
// visit(h, jg, count, v): after each run, the values as stored (v[0..count): count 0 where the row or the
// channels are outside the output); the statistics epilogue keeps them.
// (nv_exec_check_disable: the emulator instantiates this host-device template with host lambdas; nvcc would
// warn that a host function is called from a host-device one, although that instance only runs on the host.)
#pragma nv_exec_check_disable
template <class Tile, class Epi, class Xchg, class Visit>
CNNKERN_HD void store_tile(const Epi& e, const float (&acc)[Tile::kAccRegs], int t, int w, int m0, int n0, int m,
                           int n, Xchg&& xchg, Visit&& visit) {
  static_assert(Tile::kBN % 32 == 0, "groups of four n8 blocks");
  const int q = t & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int mi = m0 + 64 * w + acc_row(t, 2 * h);
    const bool row_ok = mi < m;
    typename EpiRun<Epi>::Row row{};
    if (row_ok) row = EpiRun<Epi>::row(e, mi);
#pragma unroll
    for (int jg = 0; jg < Tile::kBN / 32; ++jg) {
      float v[kEpiRun];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        float s0, s1, r0, r1;
        quad_send<Tile>(acc, q, h, jg, r, s0, s1);
        xchg(s0, s1, quad_src(q, r), h, jg, r, r0, r1);
        quad_place(v, quad_src(q, r), r0, r1);
      }
      const int nj = n0 + 8 * (4 * jg + q);
      const int count = row_ok && nj < n ? (n - nj < kEpiRun ? n - nj : kEpiRun) : 0;
      if (count > 0) EpiRun<Epi>::store_run(e, row, mi, nj, count, v);
      visit(h, jg, count, v);
    }
  }
}

// kStats: the statistics (count, mean, M2) per output channel of the stored values over the tile's <= 128
// pixels: the step-1 kernel's tiles (conv2d_stats_tiles), so bn_finalize merges them unchanged. Two passes as in
// step 1 (mean, then squared deviations from it). Each consumer thread keeps what store_tile stored for its 2
// rows x kBN / 4 columns (lane q of a quad holds columns 8 (4 jg + q) + j, j < 8, of each group jg); a pass
// sums a column's slot over the thread's rows, then over the 8 row groups of the warp (butterfly over lane bits
// 2-4), then lanes 0-3 put the warp's sums into shared memory, [consumer warp][column], read back in a fixed
// order after a barrier among the consumers (consumer_sync). The per-thread pieces are host-callable (the
// emulator replays them with its own reduction).
template <class Tile>
struct FwdStats {
  static constexpr int kCols = Tile::kBN / 4;      // column slots per thread
  static constexpr int kWarps = 4 * Tile::kConsumers;
  static constexpr int kScratchBytes = 2 * kWarps * Tile::kBN * 4;  // pass-1 and pass-2 partials, fp32
  float v[2][kCols];                    // the stored values of rows h = 0, 1
  int count[2][Tile::kBN / 32];         // valid values of each (h, jg) run: j < count

  CNNKERN_HD static int col(int q, int s) { return 8 * (4 * (s / 8) + q) + s % 8; }  // tile column of slot s
  CNNKERN_HD static int rows(int m0, int m) { return m - m0 < Tile::kBM ? m - m0 : Tile::kBM; }
  CNNKERN_HD void record(int h, int jg, int cnt, const float (&vals)[kEpiRun]) {
    count[h][jg] = cnt;
#pragma unroll
    for (int j = 0; j < kEpiRun; ++j) v[h][jg * kEpiRun + j] = vals[j];
  }
  CNNKERN_HD bool valid(int h, int s) const { return s % kEpiRun < count[h][s / kEpiRun]; }
  CNNKERN_HD float sum(int s) const {
    return (valid(0, s) ? v[0][s] : 0.0f) + (valid(1, s) ? v[1][s] : 0.0f);
  }
  CNNKERN_HD float dev2(int s, float mean) const {
    const float d0 = v[0][s] - mean, d1 = v[1][s] - mean;
    return (valid(0, s) ? d0 * d0 : 0.0f) + (valid(1, s) ? d1 * d1 : 0.0f);
  }
  // The column's total over the consumer warps' partials, in a fixed order.
  CNNKERN_HD static float total(const float* part, int c) {
    float acc = 0.0f;
#pragma unroll
    for (int r = 0; r < kWarps; ++r) acc += part[r * Tile::kBN + c];
    return acc;
  }
};

// The forward as a policy of run_warp_specialized (common/sm90/warp_specialized.cuh): items are output tiles,
// every item runs all k tiles; TMA brings the weight box, the producer gathers A; the conv epilogue stores.
template <class T, EpiKind E, int BN>
struct FwdKernel {
  using Tile = FwdTile<BN>;
  using Elem = T;
  using Producer = AProducer<T, E, BN>;
  static constexpr int kTxBytes = Tile::kBBytes;
  const FwdArgs<T, E, BN>& args;

  __device__ int num_items() const { return args.sched.num_tiles(); }
  __device__ void k_range(int, int& kt_begin, int& kt_end) const {
    kt_begin = 0;
    kt_end = args.sched.k_tiles;
  }
  __device__ void init_producer(Producer& p, int item, int t) const {
    int m0, n0;
    args.sched.template coords<Tile>(item, m0, n0);
    p.init_tile(args.a, t, m0);
  }
  template <class F>
  __device__ void copies(const Producer& p, int kt, F&& f) const {
    p.for_each_copy(args.a, kt * Tile::kBK, f);
  }
  __device__ void tma(int item, int kt, unsigned char* st, const CUtensorMap* map, uint64_t* bar) const {
    int m0, n0;
    args.sched.template coords<Tile>(item, m0, n0);
    uint32_t off;
    int c0, c1;
    fwd_b_box<Tile>(n0, kt * Tile::kBK, off, c0, c1);
    tma_load_2d(st + off, map, bar, c0, c1);
  }
  __device__ uint64_t a_desc(uint32_t st, int w, int kk) const { return sm90::a_desc<Tile>(st, w, kk); }
  __device__ uint64_t b_desc(uint32_t st, int kk) const { return sm90::b_desc<Tile>(st, kk); }
  __device__ void epilogue(const float (&acc)[Tile::kAccRegs], int t, int w, int item, unsigned char* scratch) const {
    int m0, n0;
    args.sched.template coords<Tile>(item, m0, n0);
    const int quad_base = (t & 31) & ~3;
    auto xchg = [&](float s0, float s1, int src, int, int, int, float& r0, float& r1) {
      r0 = __shfl_sync(0xffffffffu, s0, quad_base | src);
      r1 = __shfl_sync(0xffffffffu, s1, quad_base | src);
    };
    if constexpr (E == EpiKind::kStats) {
      FwdStats<Tile> st;
      store_tile<Tile>(args.epi, acc, t, w, m0, n0, args.m, args.n, xchg,
                       [&](int h, int jg, int cnt, const float (&v)[kEpiRun]) { st.record(h, jg, cnt, v); });
      stats(st, t, w, m0, n0, reinterpret_cast<float*>(scratch));
    } else {
      (void)scratch;
      store_tile<Tile>(args.epi, acc, t, w, m0, n0, args.m, args.n, xchg, [](int, int, int, const float (&)[kEpiRun]) {});
    }
  }

  // The statistics epilogue's reductions (FwdStats): pass 1 into part1, barrier, means, pass 2 into part2,
  // barrier, one consumer thread per column writes (count, mean, M2). A barrier first: the previous item's
  // writers may still read the partials.
  __device__ void stats(const FwdStats<Tile>& st, int t, int w, int m0, int n0, float* part1) const {
    using S = FwdStats<Tile>;
    float* part2 = part1 + S::kWarps * Tile::kBN;
    const int q = t & 3, lane = t & 31, wrow = 4 * w + (t >> 5);
    const float rows = static_cast<float>(S::rows(m0, args.m));
    consumer_sync<Tile>();
#pragma unroll
    for (int s = 0; s < S::kCols; ++s) {
      float p = st.sum(s);
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) p += __shfl_xor_sync(0xffffffffu, p, off);
      if (lane < 4) part1[wrow * Tile::kBN + S::col(q, s)] = p;
    }
    consumer_sync<Tile>();
#pragma unroll
    for (int s = 0; s < S::kCols; ++s) {
      float p = st.dev2(s, S::total(part1, S::col(q, s)) / rows);
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) p += __shfl_xor_sync(0xffffffffu, p, off);
      if (lane < 4) part2[wrow * Tile::kBN + S::col(q, s)] = p;
    }
    consumer_sync<Tile>();
    for (int c = 128 * w + t; c < Tile::kBN; c += 128 * Tile::kConsumers) {
      if (n0 + c < args.n) args.epi.put_stats(m0 / Tile::kBM, n0 + c, rows, S::total(part1, c) / rows, S::total(part2, c));
    }
  }
};

template <class T, EpiKind E, int BN>
__global__ void __launch_bounds__(FwdTile<BN>::kThreads, 1)
    conv2d_fwd_sm90_kernel(const __grid_constant__ CUtensorMap wmap, const FwdArgs<T, E, BN> args) {
  // Not an sm_90a build: run_warp_specialized traps, and the host never launches this (csrc checks
  // CNNKERN_HAS_SM90A and the device).
  run_warp_specialized(FwdKernel<T, E, BN>{args}, &wmap);
}

}  // namespace sm90
}  // namespace cnnkern
