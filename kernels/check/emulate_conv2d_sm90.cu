// Host replay of the sm_90a conv2d forward kernel (conv/conv2d_fwd_sm90.cuh) on the shared model of the sm_90a
// pipelines (check/emulate_sm90.cuh: mbarriers, cp.async, TMA, the wgmma operand fetch and retirement,
// the accumulator fragments). The forward's model: items are the block's output tiles; the producer's
// copies come from the kernel's AProducer::for_each_copy, the weight box from the host geometry csrc
// encodes (FwdArgs::weight_map), both operands K-major (a_desc / b_desc); the epilogue is the kernel's
// store_tile with its acc_row and quad exchange (__shfl_sync replayed as "the source lane's quad_send of
// the same round") through the conv epilogue.
//
// Checked against a double reference, outputs NaN-poisoned, fp16 and bf16, BN 64 and 128, plain and act
// epilogues, x / y channels-last or aligned channel slices of wider buffers (y also NCHW), several grid
// sizes (tiles per block 1..3, so the stage ring continues across tiles).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <vector>

#include "check/emulate_compare.cuh"
#include "check/emulate_sm90.cuh"
#include "check/emulate_tensor.cuh"
#include "conv/conv2d_fwd_sm90.cuh"

using namespace cnnkern;
using emulate::kNCHW;
using emulate::kNHWC;
using emulate::Tensor4;

namespace {

int g_failures = 0;
int g_runs = 0;

#define EXPECT(cond, ...)                              \
  do {                                                 \
    if (!(cond)) {                                     \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
      ++g_failures;                                    \
    }                                                  \
  } while (0)

using Case = emulate_sm90::ConvCase;

double act_ref(int a, double z) {
  switch (a) {
    case kActRelu: return z < 0 ? 0.0 : z;
    case kActRelu6: return z < 0 ? 0.0 : (z > 6 ? 6.0 : z);
    case kActSilu: return z / (1.0 + std::exp(-z));
    default: return z;
  }
}

// The forward as a kernel model of emulate_sm90::replay_block: items are this block's output tiles.
template <class T, EpiKind E, int BN>
struct FwdModel {
  using Args = sm90::FwdArgs<T, E, BN>;
  using Tile = sm90::FwdTile<BN>;
  using Elem = T;
  static constexpr int kN = BN;
  static constexpr bool kMnMajorA = Tile::kTransA != 0, kMnMajorB = Tile::kTransB != 0;
  const Args& args;
  sm90::Map2dGeometry g;
  const T* w;
  std::vector<int> tiles;
  std::vector<sm90::AProducer<T, E, BN>> prod = std::vector<sm90::AProducer<T, E, BN>>(Tile::kProducerThreads);
  bool ok = true;

  FwdModel(const Args& a, const Conv2dFwdParams<T>& prm, int block, int grid) : args(a), g(Args::weight_map(prm)), w(prm.w) {
    for (int t = block; t < args.sched.num_tiles(); t += grid) tiles.push_back(t);
  }
  int items() const { return static_cast<int>(tiles.size()); }
  int k_tiles(int) const { return args.sched.k_tiles; }
  int tx_bytes() const { return Tile::kBBytes; }
  template <class Tma, class Copy>
  void produce(int item, int kt, uint32_t st, Tma&& tma, Copy&& copy) {
    int m0, n0;
    args.sched.template coords<Tile>(tiles[item], m0, n0);
    const int k_base = kt * Tile::kBK;
    uint32_t off;
    int c0, c1;
    sm90::fwd_b_box<Tile>(n0, k_base, off, c0, c1);
    tma(st + off, g, w, c0, c1);
    for (int pt = 0; pt < Tile::kProducerThreads; ++pt) {
      if (kt == 0) prod[pt].init_tile(args.a, pt, m0);
      prod[pt].for_each_copy(args.a, k_base, [&](uint32_t off, const T* src, bool valid) {
        if (off + 16 > static_cast<uint32_t>(Tile::kABytes)) {
          std::printf("  cp.async destination %u outside the A tile\n", off);
          ok = false;
          return;
        }
        copy(pt, st + off, src, valid);
      });
    }
  }
  void descs(int wg, uint32_t st, int kk, uint64_t& da, uint64_t& db) const {
    da = sm90::a_desc<Tile>(st, wg, kk);
    db = sm90::b_desc<Tile>(st, kk);
  }
  void epilogue(int wg, int item, const std::vector<float>& d) {
    constexpr int R = Tile::kAccRegs;
    int m0, n0;
    args.sched.template coords<Tile>(tiles[item], m0, n0);
    std::vector<std::array<float, R>> frags(128);
    for (int t = 0; t < 128; ++t) emulate_sm90::fragments(d, BN, t, frags[t].data());
    for (int t = 0; t < 128; ++t) {
      float frag[R];
      std::copy(frags[t].begin(), frags[t].end(), frag);
      // __shfl_sync within the quad: what the source lane offers in the same round.
      auto xchg = [&](float, float, int src, int h, int jg, int r, float& r0, float& r1) {
        float fs[R];
        std::copy(frags[(t & ~3) | src].begin(), frags[(t & ~3) | src].end(), fs);
        sm90::quad_send<Tile>(fs, src, h, jg, r, r0, r1);
      };
      Stats unused;
      Stats& st = E == EpiKind::kStats ? stats[item][wg * 128 + t] : unused;
      sm90::store_tile<Tile>(args.epi, frag, t, wg, m0, n0, args.m, args.n, xchg,
                             [&](int h, int jg, int cnt, const float (&v)[kEpiRun]) { st.record(h, jg, cnt, v); });
    }
    if (E == EpiKind::kStats && ++arrived[item] == Tile::kConsumers) reduce_stats(item, m0, n0);
  }

  // kStats: what the device does with shuffles, shared memory and consumer_sync, once both consumers have
  // stored their rows of the tile: each warp's sum over its 8 row groups per column slot (plain sums here,
  // a butterfly there: the order differs within the tolerance), then the kernel's FwdStats pieces.
  using Stats = sm90::FwdStats<Tile>;
  std::map<int, std::vector<Stats>> stats_store;
  std::map<int, int> arrived;
  struct StatsMap {  // stats[item] allocates the item's thread records on first use
    FwdModel* m;
    std::vector<Stats>& operator[](int item) {
      auto& v = m->stats_store[item];
      if (v.empty()) v.resize(128 * Tile::kConsumers);
      return v;
    }
  } stats{this};
  void reduce_stats(int item, int m0, int n0) {
    const std::vector<Stats>& st = stats[item];
    std::vector<float> part1(Stats::kWarps * BN, NAN), part2(Stats::kWarps * BN, NAN);
    const float rows = static_cast<float>(Stats::rows(m0, args.m));
    for (int pass = 0; pass < 2; ++pass)
      for (int wrow = 0; wrow < Stats::kWarps; ++wrow)
        for (int q = 0; q < 4; ++q)
          for (int sl = 0; sl < Stats::kCols; ++sl) {
            const int c = Stats::col(q, sl);
            float p = 0.0f;
            for (int g = 0; g < 8; ++g) {
              const Stats& x = st[wrow * 32 + 4 * g + q];
              p += pass == 0 ? x.sum(sl) : x.dev2(sl, Stats::total(part1.data(), c) / rows);
            }
            (pass == 0 ? part1 : part2)[wrow * BN + c] = p;
          }
    for (int c = 0; c < BN; ++c)
      if (n0 + c < args.n)
        args.epi.put_stats(m0 / Tile::kBM, n0 + c, rows, Stats::total(part1.data(), c) / rows,
                           Stats::total(part2.data(), c));
    stats_store.erase(item);
  }
};

template <class T, EpiKind E, int BN>
void run(const Case& c, int out_layout, int act, int grid, std::mt19937& rng, int x_layout = kNHWC) {
  ++g_runs;
  Tensor4<T> x(c.n, c.cin, c.h, c.w, x_layout), w(c.cout, c.cin, c.kh, c.kw, kNHWC),
      y(c.n, c.cout, c.oh(), c.ow(), out_layout);
  x.fill_random(rng);
  w.fill_random(rng);
  y.fill_nan();
  std::vector<T> bias(c.cout);
  for (auto& b : bias) b = Num<T>::from_float(std::uniform_real_distribution<float>(-1, 1)(rng));
  std::vector<float> scale(c.cout), shift(c.cout);
  for (int i = 0; i < c.cout; ++i) {
    scale[i] = std::uniform_real_distribution<float>(0.25f, 2.0f)(rng);
    shift[i] = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  }
  Conv2dFwdParams<T> prm{c.shape(), x.ptr, x.st, w.ptr, w.st, bias.data(), 1, y.ptr, y.st};
  if (E == EpiKind::kAct) prm.aff = ChannelAffine{ChannelVec{scale.data(), 1, true}, ChannelVec{shift.data(), 1, true}, act};
  const int64_t pixels = int64_t{c.n} * c.oh() * c.ow(), stat_tiles = (pixels + 127) / 128;
  std::vector<float> partials(static_cast<size_t>(stat_tiles) * c.cout * 3, NAN);
  if (E == EpiKind::kStats) prm.stats = StatsOut{partials.data(), c.cout};
  const auto args = sm90::FwdArgs<T, E, BN>::make(prm, out_layout != kNHWC);
  EXPECT(args.k % sm90::FwdTile<BN>::kBK == 0, "case %s: K not a multiple of 64", c.name);
  // What the host route requires of x (csrc: GatherMap::kChannelVec): channels-last, 16-byte vectors.
  EXPECT(x.channels_fast() && x.vec_ok(8), "case %s: x layout %s is not routable", c.name, emulate::layout_name(x_layout));

  bool proto = true;
  for (int b = 0; b < grid; ++b) {
    FwdModel<T, E, BN> model(args, prm, b, grid);
    proto &= emulate_sm90::replay_block(model, rng) && model.ok;
  }

  std::vector<double> ref(y.numel(), 0.0), mag(y.numel(), 0.0);
  auto yi = [&](int n, int o, int p, int q) { return ((int64_t(n) * c.cout + o) * c.oh() + p) * c.ow() + q; };
  for (int n = 0; n < c.n; ++n)
    for (int o = 0; o < c.cout; ++o)
      for (int p = 0; p < c.oh(); ++p)
        for (int q = 0; q < c.ow(); ++q)
          for (int r = 0; r < c.kh; ++r)
            for (int s = 0; s < c.kw; ++s) {
              const int ih = p * c.sh - c.ph + r * c.dh, iw = q * c.sw - c.pw + s * c.dw;
              if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
              for (int ci = 0; ci < c.cin; ++ci) {
                const double t = double(x.get(n, ci, ih, iw)) * w.get(o, ci, r, s);
                ref[yi(n, o, p, q)] += t;
                mag[yi(n, o, p, q)] += std::fabs(t);
              }
            }
  int bad = 0;
  y.each([&](int n, int o, int p, int q) {
    double z = ref[yi(n, o, p, q)] + Num<T>::to_float(bias[o]);
    double m = mag[yi(n, o, p, q)] + 1.0;
    if (E == EpiKind::kAct) {
      z = act_ref(act, z * scale[o] + shift[o]);
      m = m * scale[o] + 1.0;
    }
    const float got = y.get(n, o, p, q);
    if (!(std::isfinite(got) && std::fabs(got - z) <= emulate::tol<T>() * m) && bad++ < 5)
      std::printf("  %s y[%d,%d,%d,%d]=%g ref=%g\n", c.name, n, o, p, q, got, z);
  });
  // kStats: (count, mean, M2) per 128-pixel tile (pixel m = (n * OH + p) * OW + q) and channel of the stored y.
  int bad_stats = 0;
  if (E == EpiKind::kStats) {
    for (int64_t tile = 0; tile < stat_tiles; ++tile)
      for (int o = 0; o < c.cout; ++o) {
        double sum = 0.0, mag = 0.0;
        const int64_t lo = tile * 128, hi = std::min<int64_t>(pixels, lo + 128);
        auto at = [&](int64_t mi) {
          const int q = static_cast<int>(mi % c.ow()), p = static_cast<int>(mi / c.ow() % c.oh());
          return double(y.get(static_cast<int>(mi / (int64_t{c.ow()} * c.oh())), o, p, q));
        };
        for (int64_t mi = lo; mi < hi; ++mi) sum += at(mi), mag += std::fabs(at(mi));
        const double mean = sum / double(hi - lo);
        double m2 = 0.0;
        for (int64_t mi = lo; mi < hi; ++mi) m2 += (at(mi) - mean) * (at(mi) - mean);
        const float* g = &partials[(static_cast<size_t>(tile) * c.cout + o) * 3];
        const bool ok = g[0] == float(hi - lo) && std::fabs(g[1] - mean) <= 1e-5 * (mag / double(hi - lo) + 1.0) &&
                        std::fabs(g[2] - m2) <= 1e-4 * (m2 + 1.0);
        if (!ok && bad_stats++ < 5)
          std::printf("  %s stats tile %lld ch %d: got (%g, %g, %g) ref (%lld, %g, %g)\n", c.name, (long long)tile, o,
                      g[0], g[1], g[2], (long long)(hi - lo), mean, m2);
      }
  }
  EXPECT(bad_stats == 0, "%s kStats: %d tile statistics wrong", c.name, bad_stats);
  EXPECT(proto && bad == 0 && y.clobbered() == 0,
         "%s %s BN=%d epi=%d act=%d grid=%d x=%s out=%s: protocol %s, %d mismatches", c.name,
         std::is_same<T, __half>::value ? "f16" : "bf16", BN, static_cast<int>(E), act, grid,
         emulate::layout_name(x_layout), emulate::layout_name(out_layout), proto ? "ok" : "FAILED", bad);
}

template <class T>
void run_type(const std::vector<Case>& cases) {
  std::mt19937 rng(2024);
  for (const Case& c : cases)
    for (int rep = 0; rep < 2; ++rep) {  // two random interleavings of every configuration
    const int m_tiles = (c.n * c.oh() * c.ow() + 127) / 128;
    run<T, EpiKind::kPlain, 128>(c, kNHWC, kActNone, 1, rng);
    run<T, EpiKind::kPlain, 64>(c, kNHWC, kActNone, std::max(1, m_tiles - 1), rng);
    run<T, EpiKind::kAct, 128>(c, kNCHW, kActRelu, 2, rng);
    run<T, EpiKind::kAct, 64>(c, kNHWC, kActSilu, 3, rng);
    run<T, EpiKind::kStats, 128>(c, kNHWC, kActNone, 2, rng);
    run<T, EpiKind::kStats, 64>(c, kNCHW, kActNone, std::max(1, m_tiles / 2), rng);
    // x and y as aligned channel slices of wider channels-last buffers (pixel stride C + 8)
    run<T, EpiKind::kPlain, 128>(c, emulate::kNHWCPadded, kActNone, 2, rng, emulate::kNHWCPadded);
    }
}

}  // namespace

int main() {
  // n cin h w cout kh kw sh sw ph pw dh dw
  const std::vector<Case> cases = {
      {2, 64, 9, 8, 72, 3, 3, 1, 1, 1, 1, 1, 1, "k3s1p1_cout72"},
      {1, 128, 13, 11, 136, 1, 1, 2, 2, 0, 0, 1, 1, "k1s2_cout136"},
      {2, 64, 7, 9, 8, 3, 3, 2, 1, 0, 2, 2, 1, "k3_s2x1_p0x2_d2x1_cout8"},
      {3, 64, 6, 6, 64, 1, 1, 1, 1, 0, 0, 1, 1, "k1s1_m108"},
      {2, 128, 9, 7, 200, 3, 3, 1, 1, 1, 1, 1, 1, "k3_c128_18ktiles_cout200"},
  };
  run_type<__half>(cases);
  std::printf("half: %s\n", g_failures ? "FAILED" : "ok");
  run_type<__nv_bfloat16>(cases);
  std::printf("bf16: %s\n", g_failures ? "FAILED" : "ok");
  std::printf(g_failures ? "emulate_conv2d_sm90: %d FAILURES in %d runs\n" : "emulate_conv2d_sm90: all %d runs passed\n",
              g_failures ? g_failures : g_runs, g_runs);
  return g_failures ? 1 : 0;
}
