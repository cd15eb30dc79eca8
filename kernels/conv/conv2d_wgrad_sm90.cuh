// Weight gradient of conv2d for sm_90a (issue 14, step 2): wgmma with both operands MN-major, grad_out by
// TMA, the im2col of x by cp.async, a warp-specialized multi-stage pipeline, persistent over (split, tile)
// work items, deterministic split-K. Design, arithmetic and predictions: common/implicit_gemm_sm90.md.
//
// GEMM as in conv2d_wgrad.cuh: M = C_out, N = KH*KW*C_in with n = (r, s, c), c inner, K = N*OH*OW pixels.
// Both operands are contiguous along M / N in memory (channels-last grad_out and x) and strided along K, so
// their shared-memory tiles are MN-major (one 128-byte row of 64 channels per pixel) and the wgmma reads
// them transposed (imm-trans-a = imm-trans-b = 1; common/sm90/wgmma.cuh).
// Scope (the host routes only these; everything else keeps the step-1 kernel): 16-bit types, one group,
// grad_out channels-last with one pixel stride (a [N*OH*OW][C_out] matrix whose row pitch is a 16-byte
// multiple: TMA), x channels-last with 16-byte aligned pixels, C_in % 64 == 0 (a 64-wide MN block of B is
// one tap's 64 consecutive channels). Any stride, padding and dilation.
//
// Block: 1 + BM/64 warpgroups, one block per SM, grid = min(work items, SMs); item = (split, m tile, n tile),
// n fastest, splits outermost (the co-resident blocks share one pixel range: its activations come from L2).
//   warpgroup 0, producer: per k tile (64 pixels) and stage, waits 'empty', thread 0 arms 'full' with the A
//     bytes and issues BM/64 TMA boxes of grad_out ({64 channels, 64 pixels}, 128-byte swizzle: one MN
//     block each); all 128 threads gather B (2 blocks of 64 filter columns x 64 pixels) with 16-byte cp.async
//     (zero-fill for padding and pixels past K) into the same layout, then one .noinc arrival each.
//   warpgroups 1..BM/64, consumers: rows 64*w .. 64*w+63 (output channels) x 128 filter columns; per k tile
//     wait 'full', 4 wgmma m64n128k16 (k16 step = +2048 bytes = 16 pixel rows), commit, wait_group<1>,
//     release the previous k tile's stage (sm90::Pipe, as the forward). After the item: wait_group<0>,
//     release, and the fp32 partial tile into the split's workspace slice ([split][C_out][N], every element
//     written once), which conv2d_wgrad_reduce_kernel sums in a fixed order (bitwise reproducible).
// The body is run_warp_specialized (common/sm90/warp_specialized.cuh), shared with the forward; this file holds
// the policy (WgradKernel) and its host-callable pieces, which kernels/check/emulate_conv2d_wgrad_sm90.cu
// replays with its model of the mbarriers, cp.async, TMA and the MN-major wgmma operand fetch.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/sm90/pipe.cuh"
#include "common/sm90/tma.cuh"
#include "common/sm90/warp_specialized.cuh"
#include "common/sm90/wgmma.cuh"
#include "conv/conv2d_wgrad.cuh"

namespace cnnkern {
namespace sm90 {

template <int BM>
struct WgradTile {
  static constexpr int kBM = BM;   // output channels, 64 per consumer warpgroup
  static constexpr int kBN = 128;  // filter columns: two 64-wide MN blocks (each one tap, 64 channels)
  static constexpr int kBK = 64;   // pixels
  static constexpr int kElemBytes = 2;
  static constexpr int kConsumers = BM / 64;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  // One MN block: 64 k rows (pixels) of 64 elements = 128 bytes, back to back (8 swizzle atoms).
  static constexpr int kBlockBytes = kBK * 64 * kElemBytes;  // 8 KiB
  static constexpr int kABlocks = BM / 64;
  static constexpr int kBBlocks = kBN / 64;
  static constexpr int kABytes = kABlocks * kBlockBytes;
  static constexpr int kBBytes = kBBlocks * kBlockBytes;
  static constexpr int kStageBytes = kABytes + kBBytes;  // 32 KiB (BM 128) / 24 KiB (BM 64)
  // As in the forward: the B gather has L2 latency plus a cp.async hop, depth hides it.
  static constexpr int kStages = BM == 128 ? 5 : 7;
  static constexpr int kBarrierBytes = 2 * kStages * 8;
  static constexpr int kSmemBytes = kStages * kStageBytes + kBarrierBytes + kSw128AtomBytes;
  static constexpr int kAccRegs = kBN / 2;
  static constexpr int kKSteps = kBK / 16;
  static constexpr int kKStepBytes = 16 * kSw128RowBytes;  // 16 pixel rows of an MN block
  // Both operands MN-major: the wgmma's imm-trans-a / imm-trans-b.
  static constexpr int kTransA = 1, kTransB = 1;

  // Producer B mapping: thread pt takes chunk pt % 8 (channels 8*chunk..+8 of each block's tap) of the pixel
  // rows pt / 8 + 16 i, i < 4, in both blocks: a warp writes 4 whole 128-byte rows per pass and block.
  static constexpr int kProducerThreads = 128;
  static constexpr int kChunks = 64 * kElemBytes / 16;
  static constexpr int kBRowStep = kProducerThreads / kChunks;
  static constexpr int kBPasses = kBK / kBRowStep;

  static constexpr unsigned kFullCount = kProducerThreads + 1;  // .noinc arrivals + thread 0's expect_tx
  static constexpr unsigned kEmptyCount = kConsumers * 4;       // one arrival per consumer warp

  static_assert(BM == 64 || BM == 128, "one or two consumer warpgroups");
  static_assert(kBlockBytes % kSw128AtomBytes == 0 && kStageBytes % kSw128AtomBytes == 0,
                "every MN block starts on a 1024-byte swizzle atom");
  static_assert(kKStepBytes % kSw128AtomBytes == 0, "a k16 step keeps the descriptor's base offset at 0");
  static_assert(kSmemBytes <= 227 * 1024, "sm_90 opt-in shared memory limit");
};

// Work items: (split, m tile, n tile), n fastest, split outermost; a split covers k tiles
// [split * kt_per_split, min(k_tiles, (split + 1) * kt_per_split)).
struct WgradSched {
  int m_tiles, n_tiles, splits, kt_per_split, k_tiles;
  CNNKERN_HD int num_items() const { return m_tiles * n_tiles * splits; }
  template <class Tile>
  CNNKERN_HD void coords(int item, int& m0, int& n0, int& split) const {
    const int mn = m_tiles * n_tiles;
    split = item / mn;
    const int r = item - split * mn;
    m0 = (r / n_tiles) * Tile::kBM;
    n0 = (r % n_tiles) * Tile::kBN;
  }
  CNNKERN_HD int kt_begin(int split) const { return split * kt_per_split; }
  CNNKERN_HD int kt_end(int split) const {
    const int e = (split + 1) * kt_per_split;
    return e < k_tiles ? e : k_tiles;
  }
};

// Split-K plan of the sm_90a weight gradient: the split count that minimizes a model of the time,
//   waves(s) * k tiles per split * t_ktile  +  s * (write + read of one split's fp32 partials),
// over the H100-SXM / H200 machine (132 SMs, 790 dense TFLOP/s, 4.2 TB/s) whatever the device, so that a
// problem's summation order, hence its bits, is the same on every sm_90 GPU. At least 4 k tiles per split
// (the pipeline's depth) unless K has fewer, at most 128 splits and 512 MiB of partials.
inline SplitKPlan wgrad_sm90_split_plan(int64_t rows, int64_t cols, int64_t k, int bm, int bn, int bk) {
  constexpr double kSms = 132.0;
  constexpr double kFlopPerNsPerSm = 790e3 / 132.0;
  constexpr double kBytesPerNs = 4.2e3;
  constexpr int64_t kMinKTiles = 4;
  constexpr int64_t kMaxSplits = 128;
  constexpr int64_t kMaxWorkspaceBytes = int64_t{512} << 20;
  const int64_t tiles = ((rows + bm - 1) / bm) * ((cols + bn - 1) / bn);
  const int64_t k_tiles = std::max<int64_t>(1, (k + bk - 1) / bk);
  const double t_ktile = 2.0 * bm * bn * bk / kFlopPerNsPerSm;
  const double t_split = 8.0 * static_cast<double>(rows) * static_cast<double>(cols) / kBytesPerNs;
  const int64_t max_splits = std::max<int64_t>(
      1, std::min({kMaxSplits, k_tiles / std::min(kMinKTiles, k_tiles), kMaxWorkspaceBytes / std::max<int64_t>(1, 4 * rows * cols)}));
  int64_t best_kt = k_tiles;
  double best = -1.0;
  for (int64_t s = 1; s <= max_splits; ++s) {
    const int64_t kt = (k_tiles + s - 1) / s;
    const int64_t splits = (k_tiles + kt - 1) / kt;  // no empty splits
    if (splits != s) continue;                        // the same plan as a smaller s
    const double waves = static_cast<double>((tiles * splits + static_cast<int64_t>(kSms) - 1) / static_cast<int64_t>(kSms));
    const double t = waves * static_cast<double>(kt) * t_ktile + static_cast<double>(splits) * t_split;
    if (best < 0.0 || t < best) {
      best = t;
      best_kt = kt;
    }
  }
  return SplitKPlan{static_cast<int>((k_tiles + best_kt - 1) / best_kt), static_cast<int>(best_kt * bk)};
}

template <class T, int BM>
struct WgradArgs {
  using Tile = WgradTile<BM>;
  using Problem = Conv2dWgradProblem<T, Fast::kRow>;
  using OpB = typename Problem::OperandB;
  OpB b;
  float* ws;          // workspace [splits][m][n], fp32
  int64_t ws_split;   // m * n
  int m, n, k;
  WgradSched sched;

  // p.k_per_split must be a multiple of Tile::kBK (the plan above guarantees it).
  __host__ static WgradArgs make(const Conv2dWgradParams<T>& p) {
    const Problem pr = Problem::make(p);
    WgradArgs r;
    r.b = pr.operand_b(0);
    r.ws = p.workspace;
    r.m = pr.m;
    r.n = pr.n;
    r.k = pr.k;
    r.ws_split = static_cast<int64_t>(pr.m) * pr.n;
    const int k_tiles = (pr.k + Tile::kBK - 1) / Tile::kBK;
    r.sched = WgradSched{(pr.m + Tile::kBM - 1) / Tile::kBM, (pr.n + Tile::kBN - 1) / Tile::kBN, p.splits,
                         p.k_per_split / Tile::kBK, k_tiles};
    return r;
  }

  // grad_out as a [N*OH*OW][C_out] matrix (channels innermost), box {64 channels, 64 pixels}.
  __host__ static Map2dGeometry dy_map(const Conv2dWgradParams<T>& p) {
    const Conv2dShape& s = p.s;
    Map2dGeometry g;
    g.dims[0] = static_cast<uint64_t>(s.cg_out);
    g.dims[1] = static_cast<uint64_t>(s.n) * s.oh * s.ow;
    g.row_bytes = static_cast<uint64_t>(p.dys.w) * sizeof(T);
    g.box[0] = 64;
    g.box[1] = Tile::kBK;
    return g;
  }
};

// The producer's B gather: the filter columns of the thread's chunk once per item, then per k tile the
// (destination byte offset in the stage, source, valid) of each of its 16-byte copies.
template <class T, int BM>
struct BProducer {
  using Args = WgradArgs<T, BM>;
  using Tile = typename Args::Tile;
  using OpB = typename Args::OpB;
  typename OpB::Row cols_[Tile::kBBlocks];
  int pt_ = 0;

  CNNKERN_HD void init_item(const OpB& op, int pt, int n0) {
    pt_ = pt;
#pragma unroll
    for (int b = 0; b < Tile::kBBlocks; ++b) cols_[b] = op.row(n0 + 64 * b + (pt % Tile::kChunks) * (16 / Tile::kElemBytes));
  }

  template <class F>
  CNNKERN_HD void for_each_copy(const OpB& op, int k_base, F&& f) const {
    const int chunk = pt_ % Tile::kChunks;
#pragma unroll
    for (int i = 0; i < Tile::kBPasses; ++i) {
      const int row = pt_ / Tile::kChunks + i * Tile::kBRowStep;
      const typename OpB::Kc kc = op.kc(k_base + row);
#pragma unroll
      for (int b = 0; b < Tile::kBBlocks; ++b) {
        bool valid;
        const T* src = op.addr(cols_[b], kc, valid);
        f(static_cast<uint32_t>(Tile::kABytes + b * Tile::kBlockBytes) + sw128_offset(row, chunk), src, valid);
      }
    }
  }
};

// TMA box j (< kABlocks) of grad_out for the k tile at pixel k_base of an item at m0: its byte offset in the
// stage (MN block j of A) and its coordinates {channel, pixel} in the [pixels][C_out] map.
template <class Tile>
CNNKERN_HD void wgrad_a_box(int j, int m0, int k_base, uint32_t& off, int& c0, int& c1) {
  off = static_cast<uint32_t>(j * Tile::kBlockBytes);
  c0 = m0 + 64 * j;
  c1 = k_base;
}

// Consumer warpgroup w's MN-major descriptors for k16 step kk of the stage at shared address `stage`.
template <class Tile>
CNNKERN_HD uint64_t wgrad_a_desc(uint32_t stage, int w, int kk) {
  return sw128_desc_mn(stage + static_cast<uint32_t>(w * Tile::kBlockBytes + kk * Tile::kKStepBytes), Tile::kBlockBytes);
}
template <class Tile>
CNNKERN_HD uint64_t wgrad_b_desc(uint32_t stage, int kk) {
  return sw128_desc_mn(stage + static_cast<uint32_t>(Tile::kABytes + kk * Tile::kKStepBytes), Tile::kBlockBytes);
}

// Consumer thread t of warpgroup w: its accumulators into the split's workspace slice `part` (row pitch n).
// Register pair (i, i + 1) holds two adjacent filter columns of one output channel: one 8-byte store, a
// quad writes 32 contiguous bytes. n is a multiple of 64, so a pair is wholly inside or outside.
template <class Tile>
CNNKERN_HD void wgrad_store_tile(const float (&acc)[Tile::kAccRegs], int t, int w, int m0, int n0, int m, int n,
                                 float* part) {
#pragma unroll
  for (int i = 0; i < Tile::kAccRegs; i += 2) {
    const int row = m0 + 64 * w + acc_row(t, i);
    const int col = n0 + acc_col(t, i);
    if (row < m && col < n) {
      *reinterpret_cast<float2*>(part + static_cast<int64_t>(row) * n + col) = make_float2(acc[i], acc[i + 1]);
    }
  }
}

// The weight gradient as a policy of run_warp_specialized (common/sm90/warp_specialized.cuh): items are
// (split, m tile, n tile), each over its split's k tiles; TMA brings grad_out, the producer gathers x's im2col;
// the epilogue stores fp32 partials.
template <class T, int BM>
struct WgradKernel {
  using Tile = WgradTile<BM>;
  using Elem = T;
  using Producer = BProducer<T, BM>;
  static constexpr int kTxBytes = Tile::kABytes;
  const WgradArgs<T, BM>& args;

  __device__ int num_items() const { return args.sched.num_items(); }
  __device__ void k_range(int item, int& kt_begin, int& kt_end) const {
    int m0, n0, split;
    args.sched.template coords<Tile>(item, m0, n0, split);
    kt_begin = args.sched.kt_begin(split);
    kt_end = args.sched.kt_end(split);
  }
  __device__ void init_producer(Producer& p, int item, int t) const {
    int m0, n0, split;
    args.sched.template coords<Tile>(item, m0, n0, split);
    p.init_item(args.b, t, n0);
  }
  template <class F>
  __device__ void copies(const Producer& p, int kt, F&& f) const {
    p.for_each_copy(args.b, kt * Tile::kBK, f);
  }
  __device__ void tma(int item, int kt, unsigned char* st, const CUtensorMap* map, uint64_t* bar) const {
    int m0, n0, split;
    args.sched.template coords<Tile>(item, m0, n0, split);
#pragma unroll
    for (int j = 0; j < Tile::kABlocks; ++j) {
      uint32_t off;
      int c0, c1;
      wgrad_a_box<Tile>(j, m0, kt * Tile::kBK, off, c0, c1);
      tma_load_2d(st + off, map, bar, c0, c1);
    }
  }
  __device__ uint64_t a_desc(uint32_t st, int w, int kk) const { return wgrad_a_desc<Tile>(st, w, kk); }
  __device__ uint64_t b_desc(uint32_t st, int kk) const { return wgrad_b_desc<Tile>(st, kk); }
  __device__ void epilogue(const float (&acc)[Tile::kAccRegs], int t, int w, int item, unsigned char*) const {
    int m0, n0, split;
    args.sched.template coords<Tile>(item, m0, n0, split);
    wgrad_store_tile<Tile>(acc, t, w, m0, n0, args.m, args.n, args.ws + split * args.ws_split);
  }
};

template <class T, int BM>
__global__ void __launch_bounds__(WgradTile<BM>::kThreads, 1)
    conv2d_wgrad_sm90_kernel(const __grid_constant__ CUtensorMap dymap, const WgradArgs<T, BM> args) {
  // Not an sm_90a build: run_warp_specialized traps, and the host never launches this.
  run_warp_specialized(WgradKernel<T, BM>{args}, &dymap);
}

}  // namespace sm90
}  // namespace cnnkern
