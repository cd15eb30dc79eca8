// Forward conv2d implicit GEMM for sm_90a (issue 14, step 2): wgmma fed by a warp-specialized, multi-stage
// pipeline, persistent over output tiles. Design, arithmetic and predictions: common/implicit_gemm_sm90.md.
//
// GEMM as in conv2d_fwd.cuh: M = N*OH*OW pixels, N = C_out, K = KH*KW*C_in with k = (r, s, c), c inner.
// Scope (the host routes only these; everything else keeps the step-1 kernel): 16-bit types, one group,
// channels-last input with 16-byte aligned pixels, C_in % 64 == 0 (a 64-wide k tile is one tap's 64
// consecutive channels), C_out % 8 == 0, weight channels-last contiguous per output channel (a [C_out][K]
// row-major matrix with a 16-byte multiple row pitch), epilogues kPlain and kAct (bias, folded BN,
// activation). Any stride, padding and dilation.
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
// The role bodies are split into host-callable pieces (which copies, which descriptors, which output
// coordinates) so that kernels/check/emulate_conv2d_sm90.cu replays them with its own model of the
// mbarriers, cp.async, TMA and wgmma operand fetch.
#pragma once

#include <cstdint>

#include "common/gemm_epilogue.cuh"
#include "common/gemm_loader.cuh"
#include "common/sm90/mbarrier.cuh"
#include "common/sm90/tma.cuh"
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

// The pipeline schedule shared by both roles and the emulator: iteration `it` counts k tiles over all
// the tiles this block processes (the ring continues across tiles).
template <class Tile>
struct Pipe {
  CNNKERN_HD static int stage(int it) { return it % Tile::kStages; }
  // Parity of the 'full' phase the consumer waits for in iteration it; the producer waits for 'empty'
  // with the opposite parity (the first pass over the ring waits for the phase "before the first").
  CNNKERN_HD static unsigned full_parity(int it) { return static_cast<unsigned>(it / Tile::kStages) & 1u; }
  CNNKERN_HD static unsigned empty_parity(int it) { return full_parity(it) ^ 1u; }
  // wgmma groups a consumer leaves in flight after its per-k-tile wait_group, and the iteration whose stage
  // it may then release ('empty'): only stages whose MMAs have retired. The tile tail (wait_group<0>)
  // releases the rest.
  static constexpr int kMmaInFlight = 1;
  CNNKERN_HD static int released_it(int it) { return it - kMmaInFlight; }
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

// Host-side geometry of the weight tensor map (2-D, [C_out][K] with K innermost), shared by csrc (which
// encodes it) and the emulator (which replays the TMA from it).
struct WeightMapGeometry {
  uint64_t dims[2];         // {K, C_out}
  uint64_t row_bytes;       // byte stride of dim 1
  uint32_t box[2];          // {kBK, kBN}
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

  __host__ static WeightMapGeometry weight_map(const Conv2dFwdParams<T>& p) {
    const Conv2dShape& s = p.s;
    WeightMapGeometry g;
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
template <class Tile, class Epi, class Xchg>
CNNKERN_HD void store_tile(const Epi& e, const float (&acc)[Tile::kAccRegs], int t, int w, int m0, int n0, int m,
                           int n, Xchg&& xchg) {
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
      if (row_ok && nj < n) EpiRun<Epi>::store_run(e, row, mi, nj, n - nj < kEpiRun ? n - nj : kEpiRun, v);
    }
  }
}

__device__ __forceinline__ void cp_async_wait_all() {
#if CNNKERN_SM90A
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

template <class T, EpiKind E, int BN>
__global__ void __launch_bounds__(FwdTile<BN>::kThreads, 1)
    conv2d_fwd_sm90_kernel(const __grid_constant__ CUtensorMap wmap, const FwdArgs<T, E, BN> args) {
#if CNNKERN_SM90A
  using Tile = FwdTile<BN>;
  using P = Pipe<Tile>;
  extern __shared__ unsigned char dsmem[];
  unsigned char* smem = dsmem + ((kSw128AtomBytes - (smem_u32(dsmem) & (kSw128AtomBytes - 1))) & (kSw128AtomBytes - 1));
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + Tile::kStages * Tile::kStageBytes);
  uint64_t* empty = full + Tile::kStages;

  const int tid = threadIdx.x;
  if (tid == 0) {
    for (int s = 0; s < Tile::kStages; ++s) {
      mbar_init(full + s, Tile::kFullCount);
      mbar_init(empty + s, Tile::kEmptyCount);
    }
    mbar_fence_init();
    tma_prefetch_map(&wmap);
  }
  __syncthreads();

  const int wg = tid / 128;
  const int t = tid % 128;
  const TileSched sched = args.sched;
  const int num_tiles = sched.num_tiles();
  const int kt_n = sched.k_tiles;
  if (wg == 0) {
    AProducer<T, E, BN> prod;
    int it = 0;
    for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
      int m0, n0;
      sched.coords<Tile>(tile, m0, n0);
      prod.init_tile(args.a, t, m0);
      for (int kt = 0; kt < kt_n; ++kt, ++it) {
        const int s = P::stage(it);
        mbar_wait(empty + s, P::empty_parity(it));
        unsigned char* st = smem + s * Tile::kStageBytes;
        const int k_base = kt * Tile::kBK;
        if (t == 0) {
          mbar_arrive_expect_tx(full + s, Tile::kBBytes);
          tma_load_2d(st + Tile::kABytes, &wmap, full + s, k_base, n0);
        }
        prod.for_each_copy(args.a, k_base,
                           [&](uint32_t off, const T* src, bool valid) { cp_async16(st + off, src, valid); });
        mbar_cp_async_arrive_noinc(full + s);
      }
    }
    cp_async_wait_all();
  } else {
    const int w = wg - 1;
    const bool lane0 = (t & 31) == 0;
    float acc[Tile::kAccRegs];
    int it = 0;
    for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
      int m0, n0;
      sched.coords<Tile>(tile, m0, n0);
#pragma unroll
      for (int i = 0; i < Tile::kAccRegs; ++i) acc[i] = 0.0f;
      const int it0 = it;
      for (int kt = 0; kt < kt_n; ++kt, ++it) {
        const int s = P::stage(it);
        mbar_wait(full + s, P::full_parity(it));
        fence_proxy_async_smem();
        const uint32_t st = smem_u32(smem + s * Tile::kStageBytes);
        wgmma_fence();
        fence_regs(acc);
#pragma unroll
        for (int kk = 0; kk < Tile::kKSteps; ++kk) Wgmma<T, BN>::mma(acc, a_desc<Tile>(st, w, kk), b_desc<Tile>(st, kk), 1);
        wgmma_commit();
        fence_regs(acc);
        wgmma_wait<P::kMmaInFlight>();
        fence_regs(acc);
        const int r = P::released_it(it);
        if (r >= it0 && lane0) mbar_arrive(empty + P::stage(r));
      }
      wgmma_wait<0>();
      fence_regs(acc);
      for (int r = P::released_it(it - 1) + 1; r < it; ++r)
        if (r >= it0 && lane0) mbar_arrive(empty + P::stage(r));
      const int quad_base = (t & 31) & ~3;
      store_tile<Tile>(args.epi, acc, t, w, m0, n0, args.m, args.n,
                       [&](float s0, float s1, int src, int, int, int, float& r0, float& r1) {
                         r0 = __shfl_sync(0xffffffffu, s0, quad_base | src);
                         r1 = __shfl_sync(0xffffffffu, s1, quad_base | src);
                       });
    }
  }
#else
  // Not an sm_90a build: the host never launches this (csrc checks CNNKERN_HAS_SM90A and the device).
  (void)wmap;
  (void)args;
  __trap();
#endif
}

}  // namespace sm90
}  // namespace cnnkern
