// Host-side replay of the depthwise conv2d kernels, block by block, thread by thread, phase by phase
// (barrier-separated phases run for every thread before the next phase starts), against a direct
// double-precision reference. Runs without a GPU: it exercises the real planning (kernels/conv/
// depthwise_conv2d_params.cuh), index math, shared-memory layouts, masks and store mappings of every
// kernel path that csrc/cuda/depthwise_conv2d.cpp can launch. Atomics become plain adds.
//
// Build/run: cmake target `cnnkern_emulate_depthwise` (ctest). Compiled with AddressSanitizer there,
// so any out-of-bounds load or store aborts; shared memory is poisoned with NaN and outputs are
// pre-filled with NaN, so reading unstaged data or leaving an output unwritten shows up as a mismatch.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "check/async_queue.cuh"
#include "check/emulate_compare.cuh"
#include "check/emulate_tensor.cuh"
#include "conv/depthwise_conv2d.cuh"

using namespace cnnkern;
using namespace cnnkern::emulate;

namespace {

int g_failures = 0;
int g_runs = 0;

struct Case {
  int n, c, h, w, mult, kh, kw, sh, sw, ph, pw, dh, dw;
  int extra_h, extra_w;  // implicit bottom/right padding beyond the top/left one
  const char* name;
  int oh() const { return (h + 2 * ph + extra_h - dh * (kh - 1) - 1) / sh + 1; }
  int ow() const { return (w + 2 * pw + extra_w - dw * (kw - 1) - 1) / sw + 1; }
  int c_out() const { return c * mult; }
  DwShape shape() const {
    return DwShape{n, c, h, w, mult, c_out(), oh(), ow(), kh, kw, sh, sw, ph, pw, dh, dw};
  }
};

// Every (n, co, oy, ox, kh, kw) term of the forward definition with an in-range input position.
template <class F>
void for_each_term(const Case& c, F f) {
  for (int n = 0; n < c.n; ++n)
    for (int co = 0; co < c.c_out(); ++co)
      for (int oy = 0; oy < c.oh(); ++oy)
        for (int ox = 0; ox < c.ow(); ++ox)
          for (int kh = 0; kh < c.kh; ++kh)
            for (int kw = 0; kw < c.kw; ++kw) {
              const int iy = oy * c.sh - c.ph + kh * c.dh, ix = ox * c.sw - c.pw + kw * c.dw;
              if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
              f(n, co, oy, ox, co / c.mult, iy, ix, kh, kw);
            }
}

// ---- replays (phase order of the __global__ wrappers) ------------------------------------------------

struct Smem {
  std::vector<float> buf;
  float* p = nullptr;
  explicit Smem(size_t bytes) : buf(bytes / sizeof(float) + 8) {
    uintptr_t a = reinterpret_cast<uintptr_t>(buf.data());
    p = buf.data() + ((16 - a % 16) % 16) / sizeof(float);
  }
  void poison(size_t bytes) {
    for (size_t i = 0; i < bytes / sizeof(float); ++i) p[i] = NAN;
  }
};

template <class T, int KT, EpiKind E>
void replay_tiled_stats(const DwTiledParams<T>& p, std::vector<DwTiledBlock<T, KT, E>>& blk, float* smem) {
  const int first = tree_first_step(blk[0].plane_threads(p));
  for (auto& b : blk) b.stats_put_sums(p, smem);
  for (int s = first; s > 0; s >>= 1)
    for (auto& b : blk) b.stats_tree(p, smem, s, 2);
  for (auto& b : blk) b.stats_center(p, smem);
  for (auto& b : blk) b.stats_put_m2(p, smem);
  for (int s = first; s > 0; s >>= 1)
    for (auto& b : blk) b.stats_tree(p, smem, s, 1);
  for (auto& b : blk) b.stats_store(p, smem);
}

template <class T, int KT, EpiKind E = EpiKind::kPlain>
void replay_tiled(const DwTiledParams<T>& p) {
  Smem sm(p.smem_bytes);
  std::vector<DwTiledBlock<T, KT, E>> blk(p.threads);
  std::vector<ThreadAsyncQueue> q(p.threads);
  // cp.async staging: each thread's copies go to its own queue and poison their slots at issue; they land
  // at the wait (check/async_queue.cuh, the conv2d replay's model).
  auto issue = [&](int j, int64_t pg) {
    HostAsyncSink*& sink = host_async_sink();
    for (int t = 0; t < p.threads; ++t) {
      sink = &q[t];
      blk[t].issue_tile_async(p, sm.p, j, pg);
      sink = nullptr;
    }
  };
  auto wait_all = [&]() {
    for (auto& qq : q) {
      if (!qq.open.empty()) {
        std::fprintf(stderr, "cp.async: copies left uncommitted at the wait\n");
        std::abort();
      }
      qq.wait(0);
    }
  };
  // dw_tiled_kernel's order. Shared memory is poisoned per block; before every (group, source) step the
  // tile and weight region is poisoned again (a stale tile of the previous step must not hide a chunk
  // convert_tile missed); the raw region is poisoned by the copies themselves at issue, and the next step's
  // copies are issued before any compute() of this step, so that reading the raw region there shows.
  const size_t tile_bytes = p.vec_stage ? static_cast<size_t>(p.raw_offset) : p.smem_bytes;
  const unsigned gz = dw_tiled_grid_z(p);
  for (unsigned bz = 0; bz < gz; ++bz)
    for (unsigned by = 0; by < p.grid_y; ++by) {
      const int64_t bg = int64_t{bz} * p.grid_y + by;
      if (bg >= p.block_groups) continue;
      const int64_t pg0 = bg * p.groups_per_block;
      const int64_t pg_end = std::min<int64_t>(pg0 + p.groups_per_block, p.plane_groups);
      for (unsigned bx = 0; bx < unsigned(p.tiles_x * p.tiles_y); ++bx) {
        for (auto& qq : q) qq.reset();
        sm.poison(p.smem_bytes);
        for (int t = 0; t < p.threads; ++t) blk[t].init(p, bx, pg0, t);
        if (p.vec_stage) issue(0, pg0);
        for (int64_t pg = pg0; pg < pg_end; ++pg) {
          if (pg > pg0)
            for (int t = 0; t < p.threads; ++t) blk[t].init(p, bx, pg, t);
          for (int j = 0; j < p.g.nsrc; ++j) {
            sm.poison(tile_bytes);
            for (auto& b : blk) b.stage(p, sm.p, j);
            if (p.vec_stage) {
              wait_all();
              for (auto& b : blk) b.convert_tile(p, sm.p);
              if (j + 1 < p.g.nsrc) {
                issue(j + 1, pg);
              } else if (pg + 1 < pg_end) {
                issue(0, pg + 1);
              }
            }
            for (auto& b : blk) b.compute(p, sm.p);
          }
          for (auto& b : blk) b.store(p);
          if constexpr (E == EpiKind::kStats) replay_tiled_stats(p, blk, sm.p);
        }
        for (auto& qq : q)
          if (!qq.groups.empty() || !qq.open.empty()) {
            std::fprintf(stderr, "cp.async: copies issued past the block's last step\n");
            std::abort();
          }
      }
    }
}

template <class T, int V, int MI, int KT, bool kRes, EpiKind E = EpiKind::kPlain, int KS = 1, int RH = 1>
void replay_direct(const DwDirectParams<T>& p) {
  if (p.rh != RH) {
    std::fprintf(stderr, "direct plan of %d rows per group replayed with RH = %d\n", p.rh, RH);
    std::abort();
  }
  Smem sm(p.smem_bytes + 16);
  std::vector<DwDirectBlock<T, V, MI, KT, kRes, E, KS, RH>> blk(p.threads);
  for (unsigned bx = 0; bx < p.grid_x; ++bx) {
    sm.poison(p.smem_bytes);
    for (int t = 0; t < p.threads; ++t) blk[t].init(p, bx, t);
    for (auto& b : blk) b.stage(p, sm.p);
    for (auto& b : blk) b.run(p, sm.p);
    if constexpr (E == EpiKind::kStats) {
      float* buf = sm.p + p.stats_off;
      const int first = tree_first_step(p.tp);
      for (auto& b : blk) b.stats_put_sums(p, buf);
      for (int s = first; s > 0; s >>= 1)
        for (auto& b : blk) b.stats_tree(p, buf, s, V + 1);
      for (auto& b : blk) b.stats_center(p, buf);
      for (auto& b : blk) b.stats_put_m2(p, buf);
      for (int s = first; s > 0; s >>= 1)
        for (auto& b : blk) b.stats_tree(p, buf, s, V);
      for (auto& b : blk) b.stats_store(p, buf);
    }
  }
}

template <class T, int VW, int KT>
void replay_wgrad(const DwWgradParams<T>& p) {
  Smem sm(p.smem_bytes);
  std::vector<DwWgradBlock<T, VW, KT>> blk(kDwThreads);
  for (int by = 0; by < p.splits; ++by)
    for (int bx = 0; bx < p.chunks * p.cblocks; ++bx) {
      sm.poison(p.smem_bytes);
      for (int t = 0; t < kDwThreads; ++t) blk[t].init(p, bx, by, t);
      for (auto& b : blk) b.accumulate(p);
      for (auto& b : blk) b.stash(p, sm.p);
      for (auto& b : blk) b.partial(p, sm.p);
      for (auto& b : blk) b.finish(p, sm.p);
    }
}

// ---- the same kernel choice as csrc/cuda/depthwise_conv2d_launch.cuh -------------------------------

template <class T, EpiKind E = EpiKind::kPlain>
void emulate_tiled(const DwTiledParams<T>& p) {
  switch (dw_window_k(p.g)) {
    case 3: replay_tiled<T, 3, E>(p); break;
    case 5: replay_tiled<T, 5, E>(p); break;
    case 7: replay_tiled<T, 7, E>(p); break;
    default: replay_tiled<T, 0, E>(p);
  }
}

template <class T, int V, int MI, int KS, EpiKind E>
void emulate_direct_window_s(const DwDirectParams<T>& p, int kt) {
  if constexpr (KS == 1 && MI == 1 && V * sizeof(T) == 16) {
    if (p.rh == 2) {
      switch (kt) {
        case 3: replay_direct<T, V, MI, 3, false, E, KS, 2>(p); return;
        case 5: replay_direct<T, V, MI, 5, false, E, KS, 2>(p); return;
        case 7: replay_direct<T, V, MI, 7, false, E, KS, 2>(p); return;
        default: std::abort();
      }
    }
  }
  switch (kt) {
    case 3:
      replay_direct<T, V, MI, 3, false, E, KS>(p);
      break;
    case 5: replay_direct<T, V, MI, 5, false, E, KS>(p); break;
    case 7: replay_direct<T, V, MI, 7, false, E, KS>(p); break;
    default: std::abort();
  }
}

template <class T, int V, int MI, EpiKind E>
void emulate_direct_window(const DwDirectParams<T>& p, DwWindow w) {
  if (w.kt == 0) {
    replay_direct<T, V, MI, 0, false, E>(p);
  } else if (w.ks == 1) {
    emulate_direct_window_s<T, V, MI, 1, E>(p, w.kt);
  } else if (w.ks == 2) {
    emulate_direct_window_s<T, V, MI, 2, E>(p, w.kt);
  } else {
    std::abort();
  }
}

// The same dispatch as dw_launch::direct_any.
template <class T, EpiKind E = EpiKind::kPlain>
void emulate_direct(const DwDirectParams<T>& p, int v, int mi, DwWindow w) {
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  const bool res = p.g.residue;
  if (res && (E != EpiKind::kPlain || w.kt != 0 || mi != 1)) std::abort();
  if (!(mi == 1 || (mi == 2 && v == kV)) || (v == 1 && w.kt != 0)) std::abort();
  if (res) {
    if constexpr (E == EpiKind::kPlain) {
      switch (v) {
        case 1: replay_direct<T, 1, 1, 0, true>(p); return;
        case 2: replay_direct<T, 2, 1, 0, true>(p); return;
        case 4: replay_direct<T, 4, 1, 0, true>(p); return;
        case 8:
          if constexpr (kV >= 8) {
            replay_direct<T, 8, 1, 0, true>(p);
            return;
          }
          break;
        default: break;
      }
    }
  } else if (v == 1) {
    replay_direct<T, 1, 1, 0, false, E>(p);
    return;
  } else if (v == kV) {
    if (mi == 1) emulate_direct_window<T, kV, 1, E>(p, w);
    else emulate_direct_window<T, kV, 2, E>(p, w);
    return;
  } else if (v == 2) {
    emulate_direct_window<T, 2, 1, E>(p, w);
    return;
  } else if (v == 4) {
    if constexpr (kV > 4) {
      emulate_direct_window<T, 4, 1, E>(p, w);
      return;
    }
  }
  std::abort();
}

// The column walk: the block's staging (poisoned shared memory first), then each thread on its own.
template <class T, int VA, int KS, EpiKind E>
void replay_column(const DwColumnParams<T>& p) {
  using Thread = DwColumnThread<T, VA, KS, E>;
  Smem sm(p.smem_bytes + 16);
  for (unsigned bx = 0; bx < p.grid_x; ++bx) {
    sm.poison(p.smem_bytes);
    for (int t = 0; t < p.threads; ++t) Thread::stage(p, sm.p, t);
    for (int t = 0; t < p.threads; ++t) {
      Thread th;
      th.init(p, bx, t, sm.p);
      th.run(p);
    }
  }
}

// The same dispatch as dw_launch::column_any: 4- or 8-byte accesses, then stride 1 or 2.
template <class T, EpiKind E>
void emulate_column(const DwColumnParams<T>& p, int va) {
  constexpr int kVa4 = 4 / static_cast<int>(sizeof(T)), kVa8 = 8 / static_cast<int>(sizeof(T));
  if (p.g.sh != 1 && p.g.sh != 2) std::abort();
  const bool s1 = p.g.sh == 1;
  if (va == kVa4) return s1 ? replay_column<T, kVa4, 1, E>(p) : replay_column<T, kVa4, 2, E>(p);
  if (va == kVa8) return s1 ? replay_column<T, kVa8, 1, E>(p) : replay_column<T, kVa8, 2, E>(p);
  std::abort();
}

template <class T, int VW>
void emulate_wgrad_k(const DwWgradParams<T>& p, int kt) {
  switch (kt) {
    case 3: replay_wgrad<T, VW, 3>(p); break;
    case 5: replay_wgrad<T, VW, 5>(p); break;
    case 7: replay_wgrad<T, VW, 7>(p); break;
    default: replay_wgrad<T, VW, 0>(p);
  }
}

// How a gather problem is run: the csrc choice, or a forced alternative.
enum class Route {
  kAuto,          // csrc's choice (tiled with the default opt-in limit, else direct)
  kTinySmem,      // tiled with a 48 KB opt-in limit (forces tile shrinking / the direct fallback)
  kDirect,        // direct even for pixel-contiguous tensors (the fallback path)
  kDirectGlobalW  // direct with weights read from global memory (no room in shared memory)
};
const char* route_name(Route r) {
  static const char* names[] = {"auto", "tiny_smem", "direct", "direct_global_w"};
  return names[static_cast<int>(r)];
}

struct PathStats {
  int tiled = 0, tiled_window = 0, tiled_vec_stage = 0, tiled_chained = 0, direct_scalar = 0, residue = 0, global_w = 0;
  int direct_v[9] = {};     // by vector width
  int window[2][8] = {};    // direct window by [stride - 1][kt]
  int row_pairs[8] = {}, row_pairs_odd = 0, row_pairs_epi = 0;  // direct rh == 2: by kt, odd out_h, act/stats
  // Column walk by [stride - 1][bytes per access / 4 - 1], with act, with a multi-row chunk (rb > 1), with
  // more than one column block per row, and as the input-grad.
  int column[2][2] = {}, column_act = 0, column_chunks = 0, column_cbk = 0, column_dgrad = 0;
} g_stats;

// Multiprocessor count given to the plan: an H200's, or 1 (long per-thread chains: gpt up to 16) every
// other call, so that both grid shapes are replayed.
int g_sms_toggle = 0;
constexpr int kDwSmsCycle[3] = {kDwDefaultSms, 1, 0};

// With the statistics epilogue, `partials` is sized (tiles, C_out, 3) from the plan and NaN-filled.
// vmax: the widest channel vector the layout allows (dw_vec_width), as csrc computes it.
template <class T, EpiKind E = EpiKind::kPlain>
void run_gather(const DwGather<T>& g, bool channel_fast, int vmax, int mi, Route route,
                std::vector<float>* partials = nullptr) {
  auto attach = [&](DwGather<T>& pg, int64_t tiles) {
    if constexpr (E == EpiKind::kStats) {
      partials->assign(size_t(tiles) * pg.out_c * 3, NAN);
      pg.stats = StatsOut{partials->data(), pg.out_c};
    }
  };
  const bool tiled_ok = route == Route::kAuto || route == Route::kTinySmem;
  const size_t optin = route == Route::kTinySmem ? kDwSmemDefault : 227 * 1024;
  // 132, 1 and 0 multiprocessors in turn: short and long per-thread chains of the direct kernel (0 acts as
  // 1 there), and unchained / chained plane groups of the tiled kernel (0: up to 8 groups per block).
  const int sms = kDwSmsCycle[g_sms_toggle++ % 3];
  // kDirect: the direct kernel for a pixel-contiguous tensor (channel_fast is false there, so a
  // zero opt-in limit is enough to refuse the tiled kernel).
  DwGatherPlan<T> plan = dw_plan_gather(g, channel_fast, vmax, mi, tiled_ok ? optin : 0, sms,
                                        E == EpiKind::kStats, route == Route::kDirectGlobalW);
  if (plan.tiled) {
    ++g_stats.tiled;
    if (dw_window_k(g) > 0) ++g_stats.tiled_window;
    if (plan.tp.vec_stage) ++g_stats.tiled_vec_stage;
    if (plan.tp.groups_per_block > 1) ++g_stats.tiled_chained;
    attach(plan.tp.g, dw_stats_tiles(plan.tp));
    emulate_tiled<T, E>(plan.tp);
    return;
  }
  if (plan.column) {
    if constexpr (E == EpiKind::kStats) std::abort();  // dw_plan_gather never plans it with statistics
    const DwColumnParams<T>& cp = plan.cp;
    ++g_stats.column[g.sh - 1][plan.v * static_cast<int>(sizeof(T)) / 4 - 1];
    if (E == EpiKind::kAct) ++g_stats.column_act;
    if (cp.rb > 1 && cp.rchunks > 1) ++g_stats.column_chunks;
    if (cp.cbk > 1) ++g_stats.column_cbk;
    if (g.flip) ++g_stats.column_dgrad;
    if constexpr (E != EpiKind::kStats) emulate_column<T, E>(cp, plan.v);
    return;
  }
  const DwDirectParams<T>& dp = plan.dp;
  ++(plan.v > 1 ? g_stats.direct_v[plan.v] : g_stats.direct_scalar);
  if (plan.win.kt > 0) ++g_stats.window[plan.win.ks - 1][plan.win.kt];
  if (dp.rh == 2) {
    ++g_stats.row_pairs[plan.win.kt];
    if (g.out_h % 2 != 0) ++g_stats.row_pairs_odd;
    if (E != EpiKind::kPlain) ++g_stats.row_pairs_epi;
  }
  if (g.residue) ++g_stats.residue;
  if (!dp.w_smem) ++g_stats.global_w;
  attach(plan.dp.g, dw_stats_tiles(plan.dp));
  emulate_direct<T, E>(plan.dp, plan.v, plan.mi, plan.win);
}

// csrc's choice of channel vector for the forward (x: v/m source channels, y: v output channels) and
// for the input-grad (no multiplier).
template <class T>
int fwd_vmax(const DwShape& s, const Tensor4<T>& x, const Tensor4<T>& y) {
  if (!x.channels_fast()) return 1;
  return dw_vec_width<T>(s.c_out, s.mult, [&](int v) { return x.vec_ok(v / s.mult) && y.vec_ok(v); });
}
template <class T>
int dgrad_vmax(const DwShape& s, const Tensor4<T>& dy, const Tensor4<T>& dx) {
  if (!dy.channels_fast() || s.mult != 1) return 1;
  return dw_vec_width<T>(s.c, 1, [&](int v) { return dy.vec_ok(v) && dx.vec_ok(v); });
}

// Weight tensors: contiguous (C_out, 1, KH, KW), or tap-major (strides 1, -, KW*C_out, C_out) for
// the view layouts, so that weight indexing through strides is exercised too.
template <class T>
Strides4 weight_strides(const Case& c, bool tap_major) {
  if (!tap_major) return Strides4{int64_t(c.kh) * c.kw, int64_t(c.kh) * c.kw, c.kw, 1};
  return Strides4{1, 1, int64_t(c.kw) * c.c_out(), c.c_out()};
}

template <class T>
struct Weight {
  std::vector<T> buf;
  Strides4 st;
  Weight(const Case& c, bool tap_major, std::mt19937& rng) : buf(size_t(c.c_out()) * c.kh * c.kw) {
    st = weight_strides<T>(c, tap_major);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& v : buf) v = Num<T>::from_float(u(rng));
  }
  float get(int co, int kh, int kw) const { return Num<T>::to_float(buf[co * st.n + kh * st.h + kw * st.w]); }
};

// ---- ops --------------------------------------------------------------------------------------------

template <class T>
void run_fwd(const Case& c, int layout, Route route, bool with_bias, std::mt19937& rng) {
  ++g_runs;
  Tensor4<T> x(c.n, c.c, c.h, c.w, layout), y(c.n, c.c_out(), c.oh(), c.ow(), layout);
  Weight<T> w(c, layout >= kNCHWView, rng);
  x.fill_random(rng);
  y.fill_nan();
  std::vector<T> bias(size_t(c.c_out()) * 2);
  for (auto& b : bias) b = Num<T>::from_float(std::uniform_real_distribution<float>(-1, 1)(rng));
  const int64_t bstride = layout == kNCHWView ? 2 : 1;

  const DwShape s = c.shape();
  const DwGather<T> g = dw_fwd_gather<T>(s, x.ptr, x.st, w.buf.data(), w.st, with_bias ? bias.data() : nullptr,
                                         bstride, y.ptr, y.st);
  run_gather<T>(g, x.channels_fast(), fwd_vmax(s, x, y), s.mult, route);

  const size_t ny = size_t(y.numel());
  std::vector<double> ref(ny, 0.0), mag(ny, 0.0);
  auto yi = [&](int n, int co, int oy, int ox) { return ((size_t(n) * c.c_out() + co) * c.oh() + oy) * c.ow() + ox; };
  for_each_term(c, [&](int n, int co, int oy, int ox, int ci, int iy, int ix, int kh, int kw) {
    const double t = double(x.get(n, ci, iy, ix)) * w.get(co, kh, kw);
    ref[yi(n, co, oy, ox)] += t;
    mag[yi(n, co, oy, ox)] += std::fabs(t);
  });
  int bad = 0;
  y.each([&](int n, int co, int oy, int ox) {
    const double b = with_bias ? Num<T>::to_float(bias[co * bstride]) : 0.0;
    const double rv = ref[yi(n, co, oy, ox)] + b;
    const float got = y.get(n, co, oy, ox);
    if (!close<T>(rv, mag[yi(n, co, oy, ox)] + std::fabs(b), got) && bad++ < 4)
      std::printf("  fwd %s %s %s y[%d,%d,%d,%d]=%g ref=%g\n", c.name, layout_name(layout), route_name(route), n, co,
                  oy, ox, got, rv);
  });
  const int clob = y.clobbered();
  if (bad || clob) {
    ++g_failures;
    std::printf("FAIL fwd %s layout=%s route=%s bias=%d: %d mismatches, %d writes outside the view\n", c.name,
                layout_name(layout), route_name(route), with_bias, bad, clob);
  }
}

double act_ref(int a, double z) {
  switch (a) {
    case kActRelu: return z < 0 ? 0.0 : z;
    case kActRelu6: return z < 0 ? 0.0 : (z > 6 ? 6.0 : z);
    case kActSilu: return z / (1.0 + std::exp(-z));
    default: return z;
  }
}

// A per-channel vector of the act epilogue, fp32 or T, read through a stride of 2.
template <class T>
struct EpiVec {
  bool on, f32;
  std::vector<float> f;
  std::vector<T> h;
  EpiVec(bool on_, bool f32_, int c, float lo, float hi, std::mt19937& rng) : on(on_), f32(f32_) {
    std::uniform_real_distribution<float> u(lo, hi);
    f.assign(size_t(c) * 2, 1e30f);
    h.assign(size_t(c) * 2, Num<T>::from_float(1e30f));
    for (int i = 0; i < c; ++i) {
      const float v = u(rng);
      f[size_t(i) * 2] = f32 ? v : Num<T>::to_float(Num<T>::from_float(v));
      h[size_t(i) * 2] = Num<T>::from_float(v);
    }
  }
  ChannelVec view() const {
    if (!on) return ChannelVec{};
    return ChannelVec{f32 ? static_cast<const void*>(f.data()) : static_cast<const void*>(h.data()), 2, f32};
  }
  double at(int c) const { return f[size_t(c) * 2]; }
};

// The forward epilogues: kAct (act((conv + bias) * scale + shift), `vecs` bits: bias, scale, shift, fp32
// vectors), or kStats (plain output + statistics; `offset` added to the bias, 1e4 for the mean >> spread
// case). The statistics are checked as the ops use them: every partial written, counts adding up to
// N*OH*OW, and Chan's merge equal to the double mean and variance of the stored output.
template <class T>
void run_fwd_epi(const Case& c, int layout, Route route, EpiKind epi, int act, int vecs, float offset,
                 std::mt19937& rng) {
  ++g_runs;
  Tensor4<T> x(c.n, c.c, c.h, c.w, layout), y(c.n, c.c_out(), c.oh(), c.ow(), layout);
  Weight<T> w(c, layout >= kNCHWView, rng);
  x.fill_random(rng);
  y.fill_nan();
  const bool with_bias = epi == EpiKind::kStats || (vecs & 1), f32 = (vecs & 8) != 0;
  std::vector<T> bias(size_t(c.c_out()));
  for (auto& b : bias) b = Num<T>::from_float(offset + std::uniform_real_distribution<float>(-1, 1)(rng));
  const bool act_epi = epi == EpiKind::kAct;
  const EpiVec<T> scale(act_epi && (vecs & 2), f32, c.c_out(), 0.25f, 2.0f, rng),
      shift(act_epi && (vecs & 4), f32, c.c_out(), -1.0f, 4.0f, rng);

  const DwShape s = c.shape();
  const bool channel_fast = x.channels_fast();
  const int vmax = fwd_vmax(s, x, y);
  DwGather<T> g = dw_fwd_gather<T>(s, x.ptr, x.st, w.buf.data(), w.st, with_bias ? bias.data() : nullptr, 1, y.ptr,
                                   y.st);
  std::vector<float> part;
  if (act_epi) {
    g.aff = ChannelAffine{scale.view(), shift.view(), act};
    run_gather<T, EpiKind::kAct>(g, channel_fast, vmax, s.mult, route);
  } else {
    run_gather<T, EpiKind::kStats>(g, channel_fast, vmax, s.mult, route, &part);
  }

  const size_t ny = size_t(y.numel());
  std::vector<double> ref(ny, 0.0), mag(ny, 0.0);
  auto yi = [&](int n, int co, int oy, int ox) { return ((size_t(n) * c.c_out() + co) * c.oh() + oy) * c.ow() + ox; };
  for_each_term(c, [&](int n, int co, int oy, int ox, int ci, int iy, int ix, int kh, int kw) {
    const double t = double(x.get(n, ci, iy, ix)) * w.get(co, kh, kw);
    ref[yi(n, co, oy, ox)] += t;
    mag[yi(n, co, oy, ox)] += std::fabs(t);
  });
  int bad = 0;
  y.each([&](int n, int co, int oy, int ox) {
    double z = ref[yi(n, co, oy, ox)] + (with_bias ? Num<T>::to_float(bias[co]) : 0.0);
    double m = mag[yi(n, co, oy, ox)] + 1.0 + std::fabs(offset);
    if (scale.on) {
      z *= scale.at(co);
      m *= scale.at(co);
    }
    if (shift.on) {
      z += shift.at(co);
      m += std::fabs(shift.at(co));
    }
    const double rv = act_epi ? act_ref(act, z) : z;
    const float got = y.get(n, co, oy, ox);
    if (!close<T>(rv, m, got) && bad++ < 4)
      std::printf("  fwd_%s %s %s %s y[%d,%d,%d,%d]=%g ref=%g\n", act_epi ? "act" : "stats", c.name,
                  layout_name(layout), route_name(route), n, co, oy, ox, got, rv);
  });
  int unwritten = 0;
  if (!act_epi) {
    const int64_t tiles = int64_t(part.size()) / (3 * c.c_out());
    const double pixels = double(c.n) * c.oh() * c.ow();
    for (float v : part) unwritten += std::isnan(v) ? 1 : 0;
    for (int co = 0; co < c.c_out() && !unwritten; ++co) {
      double sum = 0.0, vmax = 0.0;
      for (int n = 0; n < c.n; ++n)
        for (int oy = 0; oy < c.oh(); ++oy)
          for (int ox = 0; ox < c.ow(); ++ox) {
            sum += y.get(n, co, oy, ox);
            vmax = std::max(vmax, std::fabs(double(y.get(n, co, oy, ox))));
          }
      const double mean = sum / pixels;
      double var = 0.0;
      for (int n = 0; n < c.n; ++n)
        for (int oy = 0; oy < c.oh(); ++oy)
          for (int ox = 0; ox < c.ow(); ++ox) var += std::pow(y.get(n, co, oy, ox) - mean, 2);
      var /= pixels;
      // Chan's merge in double (cnnkern.problem.conv_bn.combine_partials).
      double cn = 0.0, cm = 0.0, cm2 = 0.0;
      bool counts_ok = true;
      for (int64_t t = 0; t < tiles; ++t) {
        const float* q = &part[(size_t(t) * c.c_out() + co) * 3];
        counts_ok = counts_ok && q[0] >= 0 && q[0] == std::floor(q[0]) && q[2] >= 0;
        cn += q[0];
        cm += double(q[0]) * q[1];
      }
      cm /= cn;
      for (int64_t t = 0; t < tiles; ++t) {
        const float* q = &part[(size_t(t) * c.c_out() + co) * 3];
        cm2 += q[2] + double(q[0]) * (q[1] - cm) * (q[1] - cm);
      }
      const double cvar = cm2 / cn;
      const bool ok = counts_ok && cn == pixels && std::fabs(cm - mean) <= 1e-6 * vmax + 1e-7 &&
                      std::fabs(cvar - var) <= 1e-4 * var + 1e-9 * vmax * vmax;
      if (!ok && bad++ < 4)
        std::printf("  fwd_stats %s %s %s ch %d: count %g mean %.9g var %.9g, ref %g %.9g %.9g\n", c.name,
                    layout_name(layout), route_name(route), co, cn, cm, cvar, pixels, mean, var);
    }
  }
  const int clob = y.clobbered();
  if (bad || clob || unwritten) {
    ++g_failures;
    std::printf("FAIL fwd_%s %s layout=%s route=%s act=%d vecs=%d offset=%g: %d mismatches, %d writes outside "
                "the view, %d partials unwritten\n",
                act_epi ? "act" : "stats", c.name, layout_name(layout), route_name(route), act, vecs, offset, bad,
                clob, unwritten);
  }
}

template <class T>
void run_dgrad(const Case& c, int layout, Route route, std::mt19937& rng) {
  ++g_runs;
  Tensor4<T> dy(c.n, c.c_out(), c.oh(), c.ow(), layout), dx(c.n, c.c, c.h, c.w, layout);
  Weight<T> w(c, layout >= kNCHWView, rng);
  dy.fill_random(rng);
  dx.fill_nan();
  const DwShape s = c.shape();
  const DwGather<T> g = dw_dgrad_gather<T>(s, dy.ptr, dy.st, w.buf.data(), w.st, dx.ptr, dx.st);
  run_gather<T>(g, dy.channels_fast(), dgrad_vmax(s, dy, dx), 1, route);

  const size_t nx = size_t(dx.numel());
  std::vector<double> ref(nx, 0.0), mag(nx, 0.0);
  auto xi = [&](int n, int ch, int iy, int ix) { return ((size_t(n) * c.c + ch) * c.h + iy) * c.w + ix; };
  for_each_term(c, [&](int n, int co, int oy, int ox, int ci, int iy, int ix, int kh, int kw) {
    const double t = double(dy.get(n, co, oy, ox)) * w.get(co, kh, kw);
    ref[xi(n, ci, iy, ix)] += t;
    mag[xi(n, ci, iy, ix)] += std::fabs(t);
  });
  int bad = 0;
  dx.each([&](int n, int ch, int iy, int ix) {
    const double rv = ref[xi(n, ch, iy, ix)];
    const float got = dx.get(n, ch, iy, ix);
    if (!close<T>(rv, mag[xi(n, ch, iy, ix)], got) && bad++ < 4)
      std::printf("  dgrad %s %s %s dx[%d,%d,%d,%d]=%g ref=%g\n", c.name, layout_name(layout), route_name(route), n,
                  ch, iy, ix, got, rv);
  });
  const int clob = dx.clobbered();
  if (bad || clob) {
    ++g_failures;
    std::printf("FAIL dgrad %s layout=%s route=%s: %d mismatches, %d writes outside the view\n", c.name,
                layout_name(layout), route_name(route), bad, clob);
  }
}

// split_override > 0 forces that many pixels per split (many uneven splits).
template <class T>
void run_wgrad(const Case& c, int layout, bool deterministic, int split_override, std::mt19937& rng) {
  ++g_runs;
  Tensor4<T> dy(c.n, c.c_out(), c.oh(), c.ow(), layout), x(c.n, c.c, c.h, c.w, layout);
  dy.fill_random(rng);
  x.fill_random(rng);
  // grad_w: contiguous, or tap-major storage for the view layouts.
  const Strides4 dws = weight_strides<T>(c, layout >= kNCHWView);
  const size_t nw = size_t(c.c_out()) * c.kh * c.kw;
  T* dwp = nullptr;
  if (posix_memalign(reinterpret_cast<void**>(&dwp), 16, nw * sizeof(T)) != 0) std::abort();
  for (size_t i = 0; i < nw; ++i) dwp[i] = Num<T>::from_float(NAN);

  const DwShape s = c.shape();
  const bool channel_fast = x.channels_fast();
  const int vw = channel_fast && s.mult == 1 && s.c_out % 4 == 0 && x.vec_ok(4) && dy.vec_ok(4) ? 4 : 1;
  const int kt = s.kh == s.kw && (s.kh == 3 || s.kh == 5 || s.kh == 7) ? s.kh : 0;
  DwWgradParams<T> p = dw_plan_wgrad<T>(s, vw, channel_fast, kt, deterministic);
  if (split_override > 0) {
    p.pix_per_split = split_override;
    p.splits = (p.pix + split_override - 1) / split_override;
  }
  const int taps = s.kh * s.kw;
  std::vector<float> ws(deterministic ? size_t(p.splits) * s.c_out * taps : size_t(s.c_out) * taps,
                        deterministic ? NAN : 0.0f);
  p.dy = dy.ptr;
  p.dys = dy.st;
  p.x = x.ptr;
  p.xs = x.st;
  p.ws = ws.data();
  if (vw == 4) emulate_wgrad_k<T, 4>(p, kt);
  else emulate_wgrad_k<T, 1>(p, kt);
  int unwritten = 0;
  for (float v : ws) unwritten += std::isnan(v) ? 1 : 0;
  const DwWgradFinalizeParams<T> f{ws.data(), deterministic ? p.splits : 1, s.c_out, s.kh, s.kw, dwp, dws};
  for (int64_t e = 0; e < int64_t(s.c_out) * taps; ++e) DwWgradFinalize<T>::run(f, e);

  std::vector<double> ref(nw, 0.0), mag(nw, 0.0);
  auto wi = [&](int co, int kh, int kw) { return (size_t(co) * c.kh + kh) * c.kw + kw; };
  for_each_term(c, [&](int n, int co, int oy, int ox, int ci, int iy, int ix, int kh, int kw) {
    const double t = double(dy.get(n, co, oy, ox)) * x.get(n, ci, iy, ix);
    ref[wi(co, kh, kw)] += t;
    mag[wi(co, kh, kw)] += std::fabs(t);
  });
  int bad = 0;
  for (int co = 0; co < c.c_out(); ++co)
    for (int kh = 0; kh < c.kh; ++kh)
      for (int kw = 0; kw < c.kw; ++kw) {
        const double rv = ref[wi(co, kh, kw)];
        const float got = Num<T>::to_float(dwp[co * dws.n + kh * dws.h + kw * dws.w]);
        if (!close<T>(rv, mag[wi(co, kh, kw)], got) && bad++ < 4)
          std::printf("  wgrad %s %s det=%d dw[%d,0,%d,%d]=%g ref=%g\n", c.name, layout_name(layout), deterministic, co,
                      kh, kw, got, rv);
      }
  std::free(dwp);
  if (bad || unwritten) {
    ++g_failures;
    std::printf("FAIL wgrad %s layout=%s det=%d vw=%d kt=%d splits=%d: %d mismatches, %d workspace elements unwritten\n",
                c.name, layout_name(layout), deterministic, vw, kt, p.splits, bad, unwritten);
  }
}

// ---- planning invariants ----------------------------------------------------------------------------

void test_first_tap() {
  for (int s = 1; s <= 5; ++s)
    for (int d = 1; d <= 5; ++d)
      for (int k = 1; k <= 9; ++k)
        for (int base = -20; base <= 20; ++base) {
          int expect = k;
          for (int t = 0; t < k; ++t)
            if ((base - t * d) % s == 0) {
              expect = t;
              break;
            }
          const int step = s / dw_detail::gcd(s, d);
          if (base < 0) continue;  // callers pass y + pad >= 0
          const int got = dw_first_tap(base, FastDivmod(s), d % s, k, step);
          if (got != expect) {
            if (g_failures++ < 10) std::printf("FAIL first_tap base=%d d=%d s=%d k=%d: %d vs %d\n", base, d, s, k, got, expect);
          }
          // Every contributing tap is first + i*step.
          for (int t = 0; t < k; ++t) {
            const bool contributes = (base - t * d) % s == 0;
            const bool listed = got < k && t >= got && (t - got) % step == 0;
            if (contributes != listed && g_failures++ < 10)
              std::printf("FAIL tap set base=%d d=%d s=%d k=%d t=%d\n", base, d, s, k, t);
          }
        }
}

// The bf16 row-pair kernels unpack 32-bit words of two bf16 values with integer masks instead of selects
// (DwDirectBlock::unpack_masked). A mask that keeps stray bits leaves an error below one bf16 ulp, which
// the replays' bf16 tolerance cannot see; checked here bit for bit: element 2i is the word's low half
// shifted up, 2i+1 its high half with the low 16 bits clear, both +0.0 when the column or row is outside.
void test_unpack_masked() {
  using Block = DwDirectBlock<__nv_bfloat16, 8, 1, 3, false, EpiKind::kPlain, 1, 2>;
  static_assert(Block::kMasked, "the plain bf16 row-pair kernel is the masked one");
  std::mt19937 rng(4321);
  std::uniform_int_distribution<uint32_t> bits;
  for (int trial = 0; trial < 20000; ++trial) {
    uint32_t w[4];
    for (auto& v : w) v = trial < 4 ? (trial & 1 ? 0xffffffffu : 0x0001ffffu) << (trial >> 1) : bits(rng);
    Vec<__nv_bfloat16, 8> v;
    std::memcpy(&v, w, sizeof(w));
    for (int cok = 0; cok < 2; ++cok)
      for (int rok = 0; rok < 2; ++rok) {
        float out[8];
        Block::unpack_masked(v, Block::opaque_mask(cok), Block::opaque_mask(rok), out);
        for (int i = 0; i < 4; ++i) {
          const bool in = cok && rok;
          const uint32_t expect[2] = {in ? w[i] << 16 : 0u, in ? w[i] & 0xffff0000u : 0u};
          for (int h = 0; h < 2; ++h) {
            uint32_t got;
            std::memcpy(&got, &out[2 * i + h], 4);
            if (got != expect[h] && g_failures++ < 10)
              std::printf("FAIL unpack_masked word %08x col %d row %d element %d: %08x, expected %08x\n", w[i],
                          cok, rok, 2 * i + h, got, expect[h]);
          }
        }
      }
  }
}

// Launch geometry of shapes too large to replay: grid limits, and every output/pixel/channel covered.
void test_plans() {
  auto fail = [](const char* what, const Case& c) {
    if (g_failures++ < 20) std::printf("FAIL plan %s: %s\n", what, c.name);
  };
  const std::vector<Case> big = {
      {4096, 1024, 7, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "planes_4M"},
      {64, 32, 512, 512, 1, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0, "big_planes"},
      {1, 70000, 8, 8, 2, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "channels_140k"},
      {1, 8, 300, 300, 1, 31, 31, 1, 1, 45, 45, 3, 3, 0, 0, "k31_d3_big"},
      {32, 960, 7, 7, 1, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0, "mbv3_7x7"},
  };
  {
    // The column walk's 32-bit row offsets: a 900,000-pixel row of 1,200 channels is 4.3 GB in fp32 (refused)
    // and 2.2 GB in 16-bit (accepted: uint32 byte offsets).
    const int c = 1200, w = 900000;
    const DwShape s{1, c, 3, w, 1, c, 3, w, 3, 3, 1, 1, 1, 1, 1, 1};
    const Strides4 st{int64_t{3} * w * c, 1, int64_t{w} * c, c};
    const auto gf = dw_fwd_gather<float>(s, nullptr, st, nullptr, {9, 9, 3, 1}, nullptr, 0, nullptr, st);
    const auto gh = dw_fwd_gather<__half>(s, nullptr, st, nullptr, {9, 9, 3, 1}, nullptr, 0, nullptr, st);
    if (dw_column_ok(gf, 1) || !dw_column_ok(gh, 2)) {
      ++g_failures;
      std::printf("FAIL plan column walk: 32-bit row offset gate (fp32 %d, fp16 %d)\n", dw_column_ok(gf, 1),
                  dw_column_ok(gh, 2));
    }
  }
  for (const Case& c : big) {
    const DwShape s = c.shape();
    for (int dgrad = 0; dgrad < 2; ++dgrad) {
      const DwGather<__half> g = dgrad ? dw_dgrad_gather<__half>(s, nullptr, {}, nullptr, {}, nullptr, {})
                                       : dw_fwd_gather<__half>(s, nullptr, {}, nullptr, {}, nullptr, 0, nullptr, {});
      DwTiledParams<__half> tp;
      if (dw_plan_tiled(g, 227 * 1024, &tp)) {
        const unsigned gz = dw_tiled_grid_z(tp);
        if (tp.grid_y > 65535 || gz > 65535 || int64_t{tp.grid_y} * gz < tp.block_groups ||
            tp.block_groups * tp.groups_per_block < tp.plane_groups)
          fail("tiled grid", c);
        if (int64_t{tp.tiles_x} * (kDwTiledRW << tp.tx_bits) < g.out_w ||
            int64_t{tp.tiles_y} * (kDwTiledRH << tp.ty_bits) < g.out_h)
          fail("tiled coverage", c);
        if (tp.plane_groups * tp.planes_per_block < int64_t{g.n} * g.out_c) fail("tiled planes", c);
        if (tp.threads > kDwThreads || tp.smem_bytes > 227 * 1024) fail("tiled block", c);
      }
      for (int v : {2, 4}) {
        // The column walk's geometry (its gate aside: these shapes need not be 3x3): every element of every
        // output row in exactly one thread, every row in one chunk, blocks of whole warps.
        if (g.out_c % v != 0) continue;
        for (int sms : {kDwDefaultSms, 1}) {
          const DwColumnParams<__half> cp = dw_plan_column(g, sms);
          if (cp.threads < 32 || cp.threads > kDwThreads || cp.threads % 32 != 0 ||
              int64_t{cp.cbk} * cp.threads * kDwColumnElems < cp.lo ||
              int64_t{cp.cbk - 1} * cp.threads * kDwColumnElems >= cp.lo)
            fail("column threads", c);
          if (cp.rb < 1 || cp.rb > 32 || int64_t{cp.rchunks} * cp.rb < g.out_h || int64_t{cp.rchunks - 1} * cp.rb >= g.out_h)
            fail("column chunks", c);
          if (int64_t{cp.grid_x} != int64_t{g.n} * cp.rchunks * cp.cbk) fail("column grid", c);
        }
      }
      for (int v : {1, 2, 4, 8}) {
        if (g.out_c % v != 0) continue;
        for (int cf = 0; cf < 2; ++cf) {
          for (int rh = 1; rh <= 2; ++rh) {
            const DwDirectParams<__half> dp = dw_plan_direct(g, v, cf == 1, kDwDefaultSms, rh);
            if (dp.rh != rh || int64_t{dp.groups} != int64_t{g.n} * ((g.out_h + rh - 1) / rh) * dp.xg ||
                (!g.residue && int64_t{dp.xg} * (v * 2 >= 16 ? 2 : 4) < g.out_w))
              fail("direct row groups", c);
            if (dp.gpt < 1 || dp.gpt > 16) fail("direct chain", c);
            const int64_t pblocks = (int64_t{dp.groups} + int64_t{dp.tp} * dp.gpt - 1) / (int64_t{dp.tp} * dp.gpt);
            if (int64_t{dp.grid_x} != pblocks * dp.cblocks) fail("direct grid", c);
            if (int64_t{dp.cblocks} * dp.tc < dp.cvecs || dp.threads > kDwThreads) fail("direct channels", c);
            if (dp.smem_bytes > kDwSmemDefault) fail("direct smem", c);
          }
        }
      }
    }
    for (int vw : {1, 4}) {
      for (int kt : {0, 3, 5, 7}) {
        for (int det = 0; det < 2; ++det) {
          const DwWgradParams<__half> p = dw_plan_wgrad<__half>(s, vw, vw == 4, kt, det == 1);
          if (p.splits < 1 || p.splits > 65535 || int64_t{p.splits} * p.pix_per_split < p.pix ||
              int64_t{p.splits - 1} * p.pix_per_split >= p.pix)
            fail("wgrad splits", c);
          if (int64_t{p.chunks} * p.cblocks >= (int64_t{1} << 31) || p.smem_bytes > kDwSmemDefault) fail("wgrad grid", c);
          if (kt == 0 && int64_t{p.chunks} * kDwWgradGenericTaps < int64_t{s.kh} * s.kw) fail("wgrad chunks", c);
        }
      }
    }
  }
}

template <class T>
void run_case(const Case& c, std::mt19937& rng, bool full) {
  const int layouts[] = {kNCHW, kNHWC, kNCHWView, kNHWCSlice, kNHWCPadded};
  static int rot = 0;
  for (int layout : layouts) {
    const bool nchw = layout == kNCHW || layout == kNCHWView;
    // Epilogues on every kernel path the forward can take: each activation and vector combination rotates
    // over cases and layouts; the statistics run on every path.
    for (int act = 0; act < kActCount; ++act)
      run_fwd_epi<T>(c, layout, Route::kAuto, EpiKind::kAct, act, rot++ % 16, 0.0f, rng);
    run_fwd_epi<T>(c, layout, Route::kAuto, EpiKind::kStats, 0, 0, 0.0f, rng);
    if (full) {
      const Route alt = nchw ? Route::kDirect : Route::kDirectGlobalW;
      run_fwd_epi<T>(c, layout, alt, EpiKind::kAct, rot % kActCount, rot % 16, 0.0f, rng);
      ++rot;
      run_fwd_epi<T>(c, layout, alt, EpiKind::kStats, 0, 0, 0.0f, rng);
      if (nchw) run_fwd_epi<T>(c, layout, Route::kTinySmem, EpiKind::kStats, 0, 0, 0.0f, rng);
    }
    run_fwd<T>(c, layout, Route::kAuto, layout != kNHWCSlice, rng);
    run_dgrad<T>(c, layout, Route::kAuto, rng);
    run_wgrad<T>(c, layout, layout != kNHWC, 0, rng);
    if (!full) continue;
    if (nchw) {
      run_fwd<T>(c, layout, Route::kDirect, true, rng);
      run_dgrad<T>(c, layout, Route::kDirect, rng);
      run_fwd<T>(c, layout, Route::kTinySmem, false, rng);
    } else {
      run_fwd<T>(c, layout, Route::kDirectGlobalW, true, rng);
      run_dgrad<T>(c, layout, Route::kDirectGlobalW, rng);
    }
    run_wgrad<T>(c, layout, layout == kNHWC, 0, rng);
    run_wgrad<T>(c, layout, true, 37, rng);
  }
}

template <class T>
void run_all(const std::vector<Case>& cases, bool full) {
  std::mt19937 rng(1234);
  for (const Case& c : cases) run_case<T>(c, rng, full);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  test_first_tap();
  std::printf("first_tap: %s\n", g_failures ? "FAILED" : "ok");
  test_plans();
  std::printf("plans: %s\n", g_failures ? "FAILED" : "ok");
  test_unpack_masked();
  std::printf("unpack_masked: %s\n", g_failures ? "FAILED" : "ok");
  // n c h w mult kh kw sh sw ph pw dh dw extra_h extra_w
  const std::vector<Case> cases = {
      {2, 8, 9, 11, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "k3s1p1"},
      {2, 16, 10, 9, 1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "k3s2p1"},
      {1, 4, 12, 13, 2, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0, "k5m2"},
      {1, 8, 14, 15, 1, 7, 7, 1, 1, 3, 3, 1, 1, 0, 0, "k7"},
      {2, 12, 11, 10, 1, 3, 5, 1, 2, 1, 2, 2, 1, 1, 0, "k3x5_s12_d21"},
      {1, 3, 5, 6, 4, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, "k1m4_c3"},
      {1, 5, 7, 8, 1, 2, 2, 1, 1, 0, 0, 1, 1, 1, 1, "k2_same_even"},
      {1, 4, 16, 15, 1, 13, 13, 1, 1, 6, 6, 1, 1, 0, 0, "k13"},
      {1, 2, 20, 18, 1, 31, 31, 1, 1, 15, 15, 1, 1, 0, 0, "k31"},
      {1, 2, 9, 10, 1, 31, 31, 1, 1, 45, 45, 3, 3, 0, 0, "k31_d3"},
      {3, 5, 3, 3, 1, 3, 3, 1, 1, 0, 0, 1, 1, 0, 0, "out1x1"},
      {1, 8, 13, 14, 1, 3, 3, 3, 3, 2, 2, 2, 2, 1, 2, "k3s3d2"},
      {2, 8, 9, 11, 1, 3, 3, 2, 2, 2, 2, 2, 2, 0, 1, "k3s2d2"},
      {1, 8, 12, 11, 2, 3, 3, 3, 2, 1, 1, 2, 3, 0, 0, "k3s32d23m2"},
      {1, 4, 3, 3, 1, 3, 3, 1, 1, 4, 4, 1, 1, 0, 0, "pad_gt_kernel"},
      {1, 72, 5, 6, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "c72"},
      {1, 136, 4, 5, 1, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0, "c136_k5"},
      {1, 3, 7, 9, 2, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "c3m2"},
      {2, 4, 11, 13, 1, 5, 5, 2, 2, 2, 2, 1, 1, 1, 0, "k5s2_odd"},
      {1, 2, 6, 140, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "wide_tiles_x"},
      {1, 2, 40, 20, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "tall_tiles_y"},
      {3, 7, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "many_tiny_planes"},
      {2, 4, 48, 48, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "wgrad_splits"},
      {1, 8, 10, 12, 2, 7, 7, 1, 1, 3, 3, 1, 1, 0, 0, "k7m2"},
      {1, 16, 9, 9, 1, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0, "k5_vec"},
      {1, 4, 6, 7, 1, 4, 6, 2, 3, 1, 2, 1, 2, 1, 0, "k4x6_s23"},
      // Narrow channel vectors (ShuffleNetV2's 58 / 116 channels: 4- and 8-byte vectors of 16-bit types)
      // and the stride-2 windows.
      {2, 58, 9, 10, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "c58_k3"},
      // The column walk (3x3, C not a multiple of 16 bytes, dense channels-last pixels): rows of
      // W*C % 4 == 2 (the row's last thread half full), rows over one block (58 x 19 = 1102 elements: 2
      // column blocks), tall maps (chunks of up to 32 rows), C = 2 (a thread's elements span two pixels),
      // no padding, padding 2 (whole source rows and columns outside), extra bottom padding, stride 2
      // with odd sizes, 1-wide and 1-high maps.
      {1, 58, 5, 19, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "col_c58_w19"},
      {1, 6, 37, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "col_c6_tall"},
      {2, 2, 7, 9, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "col_c2"},
      {1, 12, 6, 7, 1, 3, 3, 1, 1, 0, 0, 1, 1, 0, 0, "col_c12_p0"},
      {1, 10, 5, 6, 1, 3, 3, 1, 1, 2, 2, 1, 1, 1, 0, "col_c10_p2"},
      {2, 116, 9, 7, 1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "col_c116_s2_odd"},
      {1, 58, 11, 4, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, "col_c58_s2_extra"},
      {1, 20, 35, 6, 1, 3, 3, 2, 2, 0, 0, 1, 1, 0, 0, "col_c20_s2_tall"},
      {2, 6, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "col_c6_1x1"},
      {1, 14, 1, 9, 1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "col_c14_h1_s2"},
      {2, 116, 7, 6, 1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "c116_k3s2"},
      {1, 6, 11, 13, 1, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0, "c6_k7s2"},
      {1, 20, 9, 9, 1, 5, 5, 2, 2, 2, 2, 1, 1, 0, 0, "c20_k5s2"},
      {1, 10, 8, 7, 1, 5, 5, 1, 1, 2, 2, 1, 1, 1, 1, "c10_k5"},
      {2, 24, 9, 9, 1, 3, 3, 2, 2, 0, 0, 1, 1, 0, 0, "c24_k3s2p0"},
      {1, 12, 10, 10, 1, 3, 3, 1, 1, 2, 2, 2, 2, 0, 0, "c12_d2"},
      {1, 8, 1, 1, 1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "in1x1_s2"},
      {1, 8, 9, 9, 2, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "k3s2m2"},
      {1, 16, 5, 23, 1, 7, 7, 1, 1, 3, 3, 1, 1, 0, 0, "k7_wide"},
      // Rows of a multiple of 16 bytes (NCHW: the tiled kernel's 16-byte chunk staging), edges included.
      {2, 3, 9, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "nchw_w16"},
      {1, 4, 10, 24, 1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, "nchw_w24_s2"},
      {1, 2, 12, 32, 1, 7, 7, 1, 1, 3, 3, 1, 1, 0, 0, "nchw_w32_k7"},
      {1, 3, 6, 8, 2, 5, 5, 1, 1, 4, 5, 2, 1, 1, 0, "nchw_w8_m2_d2"},
      // Many planes of 16-byte rows: plane groups chained in one block (groups_per_block up to 8, the last
      // block's chain cut short by the plane count).
      {3, 21, 9, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "nchw_w16_chain"},
      {2, 13, 10, 24, 1, 5, 5, 2, 2, 2, 2, 1, 1, 0, 0, "nchw_w24_s2_chain"},
      // Row pairs (3x3 stride 1, 16-byte vectors: C % 8 == 0 in 16-bit, % 4 in fp32): even and odd output
      // heights (the last pair half empty), exactly one pair, no padding, padding of 2 (a pair whose
      // rows are all outside), extra bottom padding, odd widths (the last column group half empty).
      {1, 16, 8, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "rows_c16_h8"},
      {2, 24, 2, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "rows_c24_h2"},
      {1, 8, 4, 6, 1, 3, 3, 1, 1, 0, 0, 1, 1, 0, 0, "rows_c8_p0"},
      {1, 8, 5, 5, 1, 3, 3, 1, 1, 2, 2, 1, 1, 0, 0, "rows_c8_p2"},
      {1, 16, 6, 9, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, "rows_c16_extra_h"},
      {3, 32, 7, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "rows_c32_7x7"},
      {1, 16, 9, 8, 1, 7, 7, 1, 1, 3, 3, 1, 1, 0, 0, "rows_k7_h9"},
      {2, 8, 4, 5, 1, 7, 7, 1, 1, 3, 3, 1, 1, 0, 0, "rows_k7_h4"},
      {1, 24, 7, 6, 1, 5, 5, 1, 1, 2, 2, 1, 1, 0, 1, "rows_k5_h7"},
      {1, 8, 6, 9, 1, 7, 7, 1, 1, 1, 1, 1, 1, 2, 0, "rows_k7_p1_extra"},
  };
  run_all<float>(cases, !quick);
  std::printf("float: %s\n", g_failures ? "FAILED" : "ok");
  {
    // Statistics of outputs far above their spread (1e4 +- a few, fp32) on the tiled, direct-vector and
    // direct-scalar paths: a one-pass sum / sum-of-squares in fp32 would lose the variance.
    std::mt19937 rng(77);
    const Case big{2, 16, 33, 35, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, "mean_1e4"};
    for (int layout : {kNCHW, kNHWC, kNHWCSlice})
      run_fwd_epi<float>(big, layout, Route::kAuto, EpiKind::kStats, 0, 0, 1e4f, rng);
    run_fwd_epi<float>(big, kNCHW, Route::kDirect, EpiKind::kStats, 0, 0, 1e4f, rng);
    std::printf("stats mean 1e4: %s\n", g_failures ? "FAILED" : "ok");
  }
  run_all<__half>(cases, !quick);
  std::printf("half: %s\n", g_failures ? "FAILED" : "ok");
  run_all<__nv_bfloat16>(cases, !quick);
  std::printf("bf16: %s\n", g_failures ? "FAILED" : "ok");
  std::printf("paths: tiled=%d (window %d, 16-byte staging %d, chained plane groups %d) direct v2=%d v4=%d v8=%d scalar=%d residue=%d "
              "global_w=%d\n",
              g_stats.tiled, g_stats.tiled_window, g_stats.tiled_vec_stage, g_stats.tiled_chained, g_stats.direct_v[2], g_stats.direct_v[4], g_stats.direct_v[8],
              g_stats.direct_scalar, g_stats.residue, g_stats.global_w);
  std::printf("direct windows: s1 k3=%d k5=%d k7=%d, s2 k3=%d k5=%d k7=%d\n", g_stats.window[0][3],
              g_stats.window[0][5], g_stats.window[0][7], g_stats.window[1][3], g_stats.window[1][5],
              g_stats.window[1][7]);
  std::printf("direct row pairs (s1, 16-byte vectors): k3=%d k5=%d k7=%d (odd out_h %d, act/stats %d)\n",
              g_stats.row_pairs[3], g_stats.row_pairs[5], g_stats.row_pairs[7], g_stats.row_pairs_odd,
              g_stats.row_pairs_epi);
  std::printf("column walk: s1 4-byte=%d 8-byte=%d, s2 4-byte=%d 8-byte=%d (act %d, chunked %d, split rows %d, dgrad %d)\n",
              g_stats.column[0][0], g_stats.column[0][1], g_stats.column[1][0], g_stats.column[1][1],
              g_stats.column_act, g_stats.column_chunks, g_stats.column_cbk, g_stats.column_dgrad);
  // Each variant of the column walk must have been replayed (a gate that never opens would test nothing).
  for (int ks = 0; ks < 2; ++ks)
    for (int b = 0; b < 2; ++b)
      if (g_stats.column[ks][b] == 0 && !quick) {
        std::printf("FAIL column walk stride %d, %d-byte accesses: never planned\n", ks + 1, 4 * (b + 1));
        ++g_failures;
      }
  if (!quick && (g_stats.column_act == 0 || g_stats.column_chunks == 0 || g_stats.column_cbk == 0 ||
                 g_stats.column_dgrad == 0)) {
    std::printf("FAIL column walk: act, chunked, split-row or dgrad runs missing\n");
    ++g_failures;
  }
  std::printf(g_failures ? "emulate_depthwise_conv2d: %d FAILURES in %d runs\n"
                         : "emulate_depthwise_conv2d: all %d runs passed\n",
              g_failures ? g_failures : g_runs, g_runs);
  return g_failures ? 1 : 0;
}
