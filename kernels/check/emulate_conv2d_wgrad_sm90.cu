// Host replay of the sm_90a conv2d weight gradient (conv/conv2d_wgrad_sm90.cuh) on the shared model of the
// sm_90a pipelines (check/emulate_sm90.cuh: mbarriers, cp.async, TMA, the wgmma operand fetch and
// retirement, the accumulator fragments). The weight gradient's model: items are the block's (split, m tile,
// n tile) work items of WgradSched; grad_out's boxes come from the host geometry csrc encodes
// (WgradArgs::dy_map) at the kernel's coordinates, the im2col copies of x from the kernel's
// BProducer::for_each_copy; both operands are read MN-major through wgrad_a_desc / wgrad_b_desc (so a wrong
// LBO / SBO, k16 step or swizzle shows); the epilogue is the kernel's wgrad_store_tile into the fp32
// workspace (NaN-poisoned: every element must be written once), then the kernel's fixed-order reduction
// (Conv2dWgradReduce::run) into dw.
//
// Checked against a double reference, dw NaN-poisoned, fp16 and bf16, BM 64 and 128, the split plan of
// wgrad_sm90_split_plan and forced ones (one k tile per split, uneven splits), grad_out / x channels-last or
// aligned channel slices of wider buffers, dw channels-last or NCHW, several grid sizes (items per block 1..n,
// so the stage ring continues across items).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <type_traits>
#include <vector>

#include "check/emulate_compare.cuh"
#include "check/emulate_sm90.cuh"
#include "check/emulate_tensor.cuh"
#include "conv/conv2d_wgrad_sm90.cuh"

using namespace cnnkern;
using emulate::kNCHW;
using emulate::kNHWC;
using emulate::kNHWCPadded;
using emulate::Tensor4;
using Case = emulate_sm90::ConvCase;

namespace {

int g_failures = 0;
int g_runs = 0;

template <class T, int BM>
struct WgradModel {
  using Args = sm90::WgradArgs<T, BM>;
  using Tile = sm90::WgradTile<BM>;
  using Elem = T;
  static constexpr int kN = Tile::kBN;
  static constexpr bool kMnMajorA = Tile::kTransA != 0, kMnMajorB = Tile::kTransB != 0;
  const Args& args;
  sm90::Map2dGeometry g;
  const T* dy;
  std::vector<int> ids;  // this block's work items
  std::vector<sm90::BProducer<T, BM>> prod = std::vector<sm90::BProducer<T, BM>>(Tile::kProducerThreads);
  bool ok = true;

  WgradModel(const Args& a, const Conv2dWgradParams<T>& prm, int block, int grid)
      : args(a), g(Args::dy_map(prm)), dy(prm.dy) {
    for (int i = block; i < args.sched.num_items(); i += grid) ids.push_back(i);
  }
  void coords(int item, int& m0, int& n0, int& split) const {
    args.sched.template coords<Tile>(ids[item], m0, n0, split);
  }
  int items() const { return static_cast<int>(ids.size()); }
  int k_tiles(int item) const {
    int m0, n0, split;
    coords(item, m0, n0, split);
    return args.sched.kt_end(split) - args.sched.kt_begin(split);
  }
  int tx_bytes() const { return Tile::kABytes; }
  template <class Tma, class Copy>
  void produce(int item, int kt, uint32_t st, Tma&& tma, Copy&& copy) {
    int m0, n0, split;
    coords(item, m0, n0, split);
    const int k_base = (args.sched.kt_begin(split) + kt) * Tile::kBK;
    for (int j = 0; j < Tile::kABlocks; ++j) {
      uint32_t off;
      int c0, c1;
      sm90::wgrad_a_box<Tile>(j, m0, k_base, off, c0, c1);
      tma(st + off, g, dy, c0, c1);
    }
    for (int pt = 0; pt < Tile::kProducerThreads; ++pt) {
      if (kt == 0) prod[pt].init_item(args.b, pt, n0);
      prod[pt].for_each_copy(args.b, k_base, [&](uint32_t off, const T* src, bool valid) {
        if (off < static_cast<uint32_t>(Tile::kABytes)) {
          std::printf("  cp.async destination %u inside the A (TMA) blocks\n", off);
          ok = false;
          return;
        }
        copy(pt, st + off, src, valid);
      });
    }
  }
  void descs(int w, uint32_t st, int kk, uint64_t& da, uint64_t& db) const {
    da = sm90::wgrad_a_desc<Tile>(st, w, kk);
    db = sm90::wgrad_b_desc<Tile>(st, kk);
  }
  void epilogue(int w, int item, const std::vector<float>& d) {
    int m0, n0, split;
    coords(item, m0, n0, split);
    for (int t = 0; t < 128; ++t) {
      float frag[Tile::kAccRegs];
      emulate_sm90::fragments(d, kN, t, frag);
      sm90::wgrad_store_tile<Tile>(frag, t, w, m0, n0, args.m, args.n, args.ws + split * args.ws_split);
    }
  }
};

// forced_splits: 0 = the kernel's plan, otherwise about that many equal splits.
template <class T, int BM>
void run(const Case& c, int dy_layout, int x_layout, int dw_layout, int forced_splits, int grid_div,
         std::mt19937& rng) {
  using Tile = sm90::WgradTile<BM>;
  ++g_runs;
  Tensor4<T> x(c.n, c.cin, c.h, c.w, x_layout), dy(c.n, c.cout, c.oh(), c.ow(), dy_layout),
      dw(c.cout, c.cin, c.kh, c.kw, dw_layout);
  x.fill_random(rng);
  dy.fill_random(rng);
  dw.fill_nan();
  const int64_t cols = int64_t{c.kh} * c.kw * c.cin, pixels = int64_t{c.n} * c.oh() * c.ow();
  SplitKPlan plan = sm90::wgrad_sm90_split_plan(c.cout, cols, pixels, BM, Tile::kBN, Tile::kBK);
  if (forced_splits > 0) {
    const int kt = static_cast<int>((pixels + Tile::kBK - 1) / Tile::kBK);
    const int per = (kt + forced_splits - 1) / forced_splits;
    plan = SplitKPlan{(kt + per - 1) / per, per * Tile::kBK};
  }
  std::vector<float> ws(static_cast<size_t>(plan.splits) * c.cout * cols, NAN);
  const Conv2dWgradParams<T> prm{c.shape(), dy.ptr, dy.st, x.ptr, x.st, ws.data(), plan.splits, plan.k_per_split,
                                 dw.ptr, dw.st};
  // What the host route requires (csrc/cuda/conv2d_wgrad_sm90.cu, conv2d_wgrad_sm90_why_not).
  const bool dy_rows = dy.st.c == 1 && dy.st.w % 8 == 0 && dy.st.h == int64_t{c.ow()} * dy.st.w &&
                       dy.st.n == int64_t{c.oh()} * dy.st.h;
  if (!(dy_rows && x.vec_ok(8) && c.cin % 64 == 0)) {
    std::printf("FAIL case %s: layouts dy=%s x=%s are not routable\n", c.name, emulate::layout_name(dy_layout),
                emulate::layout_name(x_layout));
    ++g_failures;
    return;
  }
  const auto args = sm90::WgradArgs<T, BM>::make(prm);
  const int items = args.sched.num_items();
  const int grid = std::max(1, items / grid_div);
  bool proto = true;
  for (int b = 0; b < grid; ++b) {
    WgradModel<T, BM> model(args, prm, b, grid);
    proto &= emulate_sm90::replay_block(model, rng) && model.ok;
  }
  const int unwritten = static_cast<int>(std::count_if(ws.begin(), ws.end(), [](float v) { return std::isnan(v); }));
  const Conv2dWgradReduce<T> red = Conv2dWgradReduce<T>::make(prm);
  for (int e = 0; e < red.total; ++e) red.run(e);

  int bad = 0;
  dw.each([&](int o, int ci, int r, int s) {
    double ref = 0.0, mag = 0.0;
    for (int n = 0; n < c.n; ++n)
      for (int p = 0; p < c.oh(); ++p)
        for (int q = 0; q < c.ow(); ++q) {
          const int ih = p * c.sh - c.ph + r * c.dh, iw = q * c.sw - c.pw + s * c.dw;
          if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
          const double t = double(dy.get(n, o, p, q)) * x.get(n, ci, ih, iw);
          ref += t;
          mag += std::fabs(t);
        }
    const float got = dw.get(o, ci, r, s);
    if (!emulate::close<T>(ref, mag, got) && bad++ < 5)
      std::printf("  %s dw[%d,%d,%d,%d]=%g ref=%g\n", c.name, o, ci, r, s, got, ref);
  });
  if (!(proto && bad == 0 && unwritten == 0 && dw.clobbered() == 0)) {
    std::printf("FAIL %s %s BM=%d splits=%d (k/split %d) grid=%d/%d dy=%s x=%s dw=%s: protocol %s, %d unwritten "
                "partials, %d mismatches\n",
                c.name, std::is_same<T, __half>::value ? "f16" : "bf16", BM, plan.splits, plan.k_per_split, grid,
                items, emulate::layout_name(dy_layout), emulate::layout_name(x_layout),
                emulate::layout_name(dw_layout), proto ? "ok" : "FAILED", unwritten, bad);
    ++g_failures;
  }
}

template <class T, int BM>
void run_case(const Case& c, std::mt19937& rng) {
  for (int rep = 0; rep < 2; ++rep) {  // two random interleavings of every configuration
    run<T, BM>(c, kNHWC, kNHWC, kNHWC, 0, 1, rng);                      // the plan, one block per item
    run<T, BM>(c, kNHWC, kNHWC, kNCHW, 1000, 3, rng);                   // one k tile per split, ~3 items per block
    run<T, BM>(c, kNHWCPadded, kNHWCPadded, kNHWC, 3, 1000000, rng);    // uneven splits, one block does all
  }
}

template <class T>
void run_type(const std::vector<Case>& cases) {
  std::mt19937 rng(2025);
  for (const Case& c : cases) {
    if (c.cout <= 64) {
      run_case<T, 64>(c, rng);
    } else {
      run_case<T, 128>(c, rng);
    }
  }
}

}  // namespace

int main() {
  // n cin h w cout kh kw sh sw ph pw dh dw
  const std::vector<Case> cases = {
      {2, 64, 9, 8, 72, 3, 3, 1, 1, 1, 1, 1, 1, "k3s1p1_cout72"},             // BM 128, half-empty last n tile
      {1, 128, 13, 11, 136, 1, 1, 2, 2, 0, 0, 1, 1, "k1s2_cout136"},          // 2 m tiles, 1 partial k tile
      {2, 64, 7, 9, 8, 3, 3, 2, 1, 0, 2, 2, 1, "k3_s2x1_p0x2_d2x1_cout8"},    // BM 64, 8 of 64 rows
      {3, 64, 6, 6, 64, 1, 1, 1, 1, 0, 0, 1, 1, "k1s1_p108"},                 // BM 64, N = 64 (one B block)
      {2, 128, 9, 7, 200, 3, 3, 1, 1, 1, 1, 1, 1, "k3_c128_cout200"},         // 2 x 9 tiles
      {4, 64, 16, 16, 64, 3, 3, 1, 1, 1, 1, 1, 1, "k3_p1024_16ktiles"},       // the plan splits K
  };
  run_type<__half>(cases);
  std::printf("half: %s\n", g_failures ? "FAILED" : "ok");
  run_type<__nv_bfloat16>(cases);
  std::printf("bf16: %s\n", g_failures ? "FAILED" : "ok");
  std::printf(g_failures ? "emulate_conv2d_wgrad_sm90: %d FAILURES in %d runs\n"
                         : "emulate_conv2d_wgrad_sm90: all %d runs passed\n",
              g_failures ? g_failures : g_runs, g_runs);
  return g_failures ? 1 : 0;
}
