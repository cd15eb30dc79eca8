// Host-side replay of the grouped pointwise conv kernels (forward, input grad, weight grad + split
// reduction) and of the channel-shuffle copy, block by block, thread by thread, phase by phase
// (block_replay.cuh), against a double-precision reference of the fused semantics: conv + bias, then
// scale and shift (activation dtype or fp32), ReLU, stored at the shuffled channel; the backward reads
// the gradient back through the same map with the ReLU mask of the saved output.
//
// Build/run: cmake target `cnnkern_emulate_group_pointwise` (ctest), under AddressSanitizer. Outputs
// are NaN-filled and views sit inside sentinel-filled buffers, so unwritten elements and stray writes
// both fail. The tensor-core MMA is replaced by SimtMath (same shared-memory contract).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "check/block_replay.cuh"
#include "check/emulate_compare.cuh"
#include "check/emulate_tensor.cuh"
#include "conv/channel_shuffle.cuh"
#include "conv/group_pointwise_conv2d.cuh"
#include "conv/group_pointwise_conv2d_smallk.cuh"
#include "conv/group_pointwise_conv2d_smallk_wgrad.cuh"

using namespace cnnkern;
using namespace cnnkern::emulate;

namespace {

int g_failures = 0;
int g_runs = 0;
struct {
  int fwd_vec, shuffle_vec_pixel, shuffle_vec_channel, shuffle_fill_tiled, shuffle_fill_vec, shuffle_fill_vec_g2;
  int shuffle_fill_half_vec, shuffle_fill_half_run;  // fill with 8-byte Q vectors; groups 2 with one-access halves
  // small-K forward: load / store modes, column widths, tile sizes, persistent CTAs, ragged last tile
  int sk_dense, sk_scalar, sk_slab, sk_scatter, sk_rc4, sk_rc8, sk_mma, sk_linear, sk_padrows, sk_p128, sk_p64, sk_p32, sk_p16, sk_multi, sk_tail;
  // small-K forward with the fused passthrough: flat / row (16-, 8-, 4-byte pieces) / element copies, placement
  // steps 8/4/2/1, mma / FMA
  int skp_runs, skp_flat, skp_rows16, skp_rows8, skp_rows4, skp_scalar, skp_ch8, skp_ch4, skp_ch2, skp_ch1, skp_mma, skp_fma;
  // small-K input grad: mma / FMA, with a mask (dense 16-byte copies / element loads), concat (skipped columns)
  int skd_mma, skd_fma, skd_mask_dense, skd_mask_scalar, skd_cat, skd_slab, skd_ch8, skd_ch4, skd_ch2, skd_ch1;
  // small-K weight grad: dense / element copies, mask, concat, ragged last tile, several tiles per split,
  // fragments beyond one per warp, convert steps of dy and x
  int skw_dense, skw_scalar, skw_mask, skw_cat, skw_tail, skw_multi, skw_slots, skw_chunks, skw_ch8, skw_ch4, skw_ch2, skw_ch1;
} g_paths{};  // the vector paths must actually be exercised

struct Case {
  int n, cin, h, w, cout, groups;
  int shuffle_groups;  // of the stored tensor; 1 = no shuffle
  int before, after;   // channels of the concatenation before / after this conv's (0, 0: plain)
  const char* name;
  int total() const { return before + cout + after; }
  GpwShape shape() const {
    return GpwShape{n, h, w, cin, cout, groups, cin / groups, cout / groups, total(), shuffle_groups, before};
  }
  int dest(int c) const {
    const int d = c + before, pg = total() / shuffle_groups;
    return (d % pg) * shuffle_groups + d / pg;
  }
};

// A per-channel vector in T or in fp32 (the folded-BN case), as the kernels see it.
struct Vec1 {
  std::vector<float> f;
  std::vector<uint16_t> h;  // raw T storage when T is 16-bit
  bool f32 = true;
  bool on = false;
  std::vector<double> val;  // the values the kernel reads, exactly

  template <class T>
  void make(int c, bool present, bool as_f32, float base, std::mt19937& rng) {
    on = present;
    f32 = as_f32 || sizeof(T) == 4;
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    val.assign(c, 0.0);
    f.assign(c, 0.f);
    h.assign(c, 0);
    for (int i = 0; i < c; ++i) {
      const float x = base + u(rng);
      if (f32) {
        f[i] = x;
        val[i] = x;
      } else {
        const T t = Num<T>::from_float(x);
        std::memcpy(&h[i], &t, sizeof(T));
        val[i] = Num<T>::to_float(t);
      }
    }
  }
  ChannelVec view() const {
    if (!on) return ChannelVec{};
    return ChannelVec{f32 ? static_cast<const void*>(f.data()) : static_cast<const void*>(h.data()), 1, f32};
  }
  double at(int c, double absent) const { return on ? val[c] : absent; }
};

struct Epi {
  bool bias, scale, shift, relu, f32_vecs;
};

// ---- small-K forward replay ----------------------------------------------------------------------------

// mma.sync m16n8k16 (row.col, fp32 accumulate) of one warp from its lanes' fragment registers, in the
// PTX ISA layout (see GpwSmallK::a_frag): D = C + A * B, summed in k order in fp32.
template <class T>
void host_mma16816(float acc[32][4], const uint32_t a[32][4], const uint32_t b[32][2]) {
  auto half = [](uint32_t r, int hi) {
    const uint16_t bits = static_cast<uint16_t>(hi ? r >> 16 : r & 0xffffu);
    T v;
    std::memcpy(&v, &bits, sizeof(v));
    return Num<T>::to_float(v);
  };
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const int gid = l >> 2, tig = l & 3;
    for (int q = 0; q < 4; ++q)
      for (int h = 0; h < 2; ++h) A[gid + 8 * (q & 1)][2 * tig + 8 * (q >> 1) + h] = half(a[l][q], h);
    for (int q = 0; q < 2; ++q)
      for (int h = 0; h < 2; ++h) B[2 * tig + 8 * q + h][gid] = half(b[l][q], h);
    for (int i = 0; i < 4; ++i) C[gid + 8 * (i >> 1)][2 * tig + (i & 1)] = acc[l][i];
  }
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c) {
      float v = C[r][c];
      for (int k = 0; k < 16; ++k) v += A[r][k] * B[k][c];
      C[r][c] = v;
    }
  for (int l = 0; l < 32; ++l) {
    const int gid = l >> 2, tig = l & 3;
    for (int i = 0; i < 4; ++i) acc[l][i] = C[gid + 8 * (i >> 1)][2 * tig + (i & 1)];
  }
}

// The mma compute phase, warp by warp: the kernel's own fragment loads and epilogue, lane by lane,
// around a host m16n8k16 (GpwSmallK::compute_mma_device's loop).
template <class K>
void replay_mma_phase(const K& k, unsigned char* smem, int buf) {
  using T = std::remove_cv_t<std::remove_reference_t<decltype(*k.p.x)>>;
  const auto sm = k.carve(smem);
  const int items = k.mma_items(), ksteps = k.pl.kpad / 16;
  for (int warp = 0; warp < kGpwSmallKThreads / 32; ++warp)
    for (int it = warp; it < items; it += kGpwSmallKThreads / 32) {
      const auto m = k.mma_item(it);
      static float acc[8][32][4];
      std::memset(acc, 0, sizeof(acc));
      for (int kb = 0; kb < ksteps; ++kb) {
        uint32_t a[32][4];
        for (int l = 0; l < 32; ++l) k.a_frag(k.a_src(smem, buf), m, kb, l, a[l]);
        for (int n = 0; n < m.nt; ++n) {
          uint32_t b[32][2];
          for (int l = 0; l < 32; ++l) k.b_frag(sm.wt, m, n, kb, l, b[l]);
          host_mma16816<T>(acc[n], a, b);
        }
      }
      for (int n = 0; n < m.nt; ++n)
        for (int l = 0; l < 32; ++l) k.mma_epilogue(smem, m, n, l, acc[n][l]);
    }
}

// Runs each phase for every thread of the block in turn; barriers and cp.async waits are implied by the
// phase order (the copies are synchronous here).
struct HostExec {
  template <class F>
  void phase(F&& f) {
    for (int t = 0; t < kGpwSmallKThreads; ++t) f(t);
  }
  void barrier() {}
  void wait(int) {}
  template <class K>
  void mma_phase(const K& k, unsigned char* smem, int buf) {
    replay_mma_phase(k, smem, buf);
  }
};

// Every CTA of the persistent grid, in turn, with its shared memory (exact size, for ASan) poisoned
// with 0xff bytes: NaN in fp32, fp16 and bf16, so anything read before it is written shows.
template <class T, int RC, bool kDgrad>
void replay_smallk(const GpwSmallK<T, RC, kDgrad>& k) {
  void* mem = nullptr;
  if (posix_memalign(&mem, 16, size_t(k.pl.smem_bytes)) != 0) std::abort();
  auto* smem = static_cast<unsigned char*>(mem);
  for (int cta = 0; cta < k.pl.grid; ++cta) {
    std::memset(smem, 0xff, size_t(k.pl.smem_bytes));
    HostExec ex;
    k.run_cta(ex, smem, cta, k.pl.grid);
  }
  std::free(mem);
}

// The small-K weight gradient: every split (CTA) in turn with poisoned shared memory; the warps' accumulator
// fragments persist across the split's tiles, as the device's registers do.
template <class T>
struct HostWgradExec {
  static float acc[kGpwSmallKThreads / 32][kGpwWgradItems][kGpwWgradItemN][32][4];
  HostWgradExec() { std::memset(acc, 0, sizeof(acc)); }
  template <class F>
  void phase(F&& f) {
    for (int t = 0; t < kGpwSmallKThreads; ++t) f(t);
  }
  void barrier() {}
  void wait() {}
  // ldmatrix.x4 of the 32 lanes' rows (block_replay's emulation, bounds-checked against the tile), as the
  // 32-bit registers mma takes.
  static void ldsm(const T* base, int elems, const int (&off)[32], int kb, uint32_t (&r)[32][4]) {
    const T* rows[32];
    for (int l = 0; l < 32; ++l) rows[l] = base + off[l] + kb * 16;
    uint16_t out[32][4][2];
    emulate_ldmatrix_x4<T>(rows, base, elems, out);
    for (int l = 0; l < 32; ++l)
      for (int q = 0; q < 4; ++q) r[l][q] = uint32_t(out[l][q][0]) | uint32_t(out[l][q][1]) << 16;
  }
  void mma_phase(const GpwSmallKWgrad<T>& k, unsigned char* smem) {
    const auto m = k.carve(smem);
    const int gt_elems = (k.pl.trash_row + 1) * k.pl.ldp, xt_elems = (k.p.s.groups * k.pl.npad + 8) * k.pl.ldp;
    for (int warp = 0; warp < kGpwSmallKThreads / 32; ++warp)
      for (int slot = 0; slot < kGpwWgradItems; ++slot) {
        typename GpwSmallKWgrad<T>::Item it;
        if (!k.item_of(warp, slot, it)) break;
        int ao[32], bo[kGpwWgradItemN / 2][32];
        for (int l = 0; l < 32; ++l) {
          ao[l] = k.a_row(it, l);
          for (int q = 0; q < kGpwWgradItemN / 2; ++q) bo[q][l] = k.b_row(it, q, l);
        }
        for (int kb = 0; kb < k.pl.tile_p / 16; ++kb) {
          uint32_t a[32][4], b[32][4];
          ldsm(m.gt, gt_elems, ao, kb, a);
          for (int n = 0; n < it.ntc; ++n) {
            using K = GpwSmallKWgrad<T>;
            if (K::b_reg(n) == 0) ldsm(m.xt, xt_elems, bo[K::b_pair(n)], kb, b);
            uint32_t bn[32][2];
            for (int l = 0; l < 32; ++l) {
              bn[l][0] = b[l][K::b_reg(n)];
              bn[l][1] = b[l][K::b_reg(n) + 1];
            }
            host_mma16816<T>(acc[warp][slot][n], a, bn);
          }
        }
      }
  }
  void finish(const GpwSmallKWgrad<T>& k, int split) {
    for (int warp = 0; warp < kGpwSmallKThreads / 32; ++warp)
      for (int slot = 0; slot < kGpwWgradItems; ++slot) {
        typename GpwSmallKWgrad<T>::Item it;
        if (!k.item_of(warp, slot, it)) break;
        for (int n = 0; n < it.ntc; ++n)
          for (int l = 0; l < 32; ++l) k.store_partial(split, it, n, l, acc[warp][slot][n][l]);
      }
  }
};
template <class T>
float HostWgradExec<T>::acc[kGpwSmallKThreads / 32][kGpwWgradItems][kGpwWgradItemN][32][4];

template <class T>
void replay_smallk_wgrad(const GpwSmallKWgrad<T>& k) {
  void* mem = nullptr;
  if (posix_memalign(&mem, 16, size_t(k.pl.smem_bytes)) != 0) std::abort();
  auto* smem = static_cast<unsigned char*>(mem);
  for (int split = 0; split < k.pl.splits; ++split) {
    std::memset(smem, 0xff, size_t(k.pl.smem_bytes));
    HostWgradExec<T> ex;
    k.run_cta(ex, smem, split);
  }
  std::free(mem);
}

// Small-K variants: 3 = the plan as csrc/ makes it; 4 = forced element loads and element stores;
// 5 = forced 32-pixel (or 16) tiles and the other column width; 6 = 16-pixel tiles, element loads. `sms` sizes the persistent grid.
struct SmallKRun {
  int variant, sms;
};

template <class T, bool kDgrad>
void replay_smallk_planned(const GpwSmallKProblem<T>& q, const GpwSmallKPlan& pl) {
  if (pl.rc == 4) replay_smallk(GpwSmallK<T, 4, kDgrad>::make(q, pl));
  else if (pl.rc == 8) replay_smallk(GpwSmallK<T, 8, kDgrad>::make(q, pl));
  else if constexpr (sizeof(T) == 2) replay_smallk(GpwSmallK<T, kGpwMma, kDgrad>::make(q, pl));
  else std::abort();  // the plan never picks mma for fp32
}

// Plans and replays the forward (q = gpw_smallk_fwd_problem) or the input grad (gpw_smallk_dgrad_problem).
template <class T>
bool run_smallk(const GpwSmallKProblem<T>& q, const SmallKRun& r, bool expect, const char* name) {
  const GpwFwdParams<T>& p = q.p;
  GpwSmallKForce f;
  if (r.variant == 4) {
    f.scalar_in = true;
    f.scatter_out = true;
  }
  if (r.variant == 5) {  // 16-bit: the FMA path instead of mma
    const GpwSmallKPlan base = plan_gpw_smallk(q, r.sms);
    f.tile_p = 32;
    f.rc = base.rc == 8 ? 4 : 8;
    f.fma = true;
  }
  if (r.variant == 6) {
    f.tile_p = 16;
    f.scalar_in = true;
    f.conv_ch = 1;  // (input grad) the element convert whatever cr is
  }
  GpwSmallKPlan pl = plan_gpw_smallk(q, r.sms, f);
  if (r.variant == 5 && !pl.use()) {  // (wide fp32 inputs: 32 pixels do not fit, 16 do)
    f.tile_p = 16;
    pl = plan_gpw_smallk(q, r.sms, f);
  }
  if (!pl.use()) {
    if (expect) {
      ++g_failures;
      std::printf("FAIL smallk %s %s variant=%d: plan refused (%s)\n", q.dgrad ? "dgrad" : "fwd", name, r.variant,
                  pl.why_not);
    }
    return false;
  }
  if (!expect) {
    ++g_failures;
    std::printf("FAIL smallk %s %s variant=%d: plan accepted a problem it must leave to the GEMM\n",
                q.dgrad ? "dgrad" : "fwd", name, r.variant);
  }
  auto& g = g_paths;
  if (q.dgrad) {
    replay_smallk_planned<T, true>(q, pl);
    ++(pl.rc == kGpwMma ? g.skd_mma : g.skd_fma);
    if (q.mask != nullptr) ++(pl.in_mode == kGpwInDense16 ? g.skd_mask_dense : g.skd_mask_scalar);
    g.skd_cat += q.src_total != p.s.c_in;
    g.skd_slab += pl.out_mode == kGpwOutSlab16;
    ++(pl.conv_ch == 8 ? g.skd_ch8 : pl.conv_ch == 4 ? g.skd_ch4 : pl.conv_ch == 2 ? g.skd_ch2 : g.skd_ch1);
    return true;
  }
  replay_smallk_planned<T, false>(q, pl);
  if (pl.pass) {
    ++(pl.pass_copy == kGpwPassFlat     ? g.skp_flat
       : pl.pass_copy == kGpwPassScalar ? g.skp_scalar
       : pl.pass_unit == 16             ? g.skp_rows16
       : pl.pass_unit == 8              ? g.skp_rows8
                                        : g.skp_rows4);
    ++(pl.pass_ch == 8 ? g.skp_ch8 : pl.pass_ch == 4 ? g.skp_ch4 : pl.pass_ch == 2 ? g.skp_ch2 : g.skp_ch1);
    ++(pl.rc == kGpwMma ? g.skp_mma : g.skp_fma);
  }
  ++(pl.in_mode == kGpwInDense16 ? g.sk_dense : g.sk_scalar);
  ++(pl.out_mode == kGpwOutSlab16 ? g.sk_slab : g.sk_scatter);
  ++(pl.rc == 4 ? g.sk_rc4 : pl.rc == 8 ? g.sk_rc8 : g.sk_mma);
  g.sk_linear += pl.o_linear;
  g.sk_padrows += pl.ldr != p.s.c_in && pl.in_mode == kGpwInDense16;
  ++(pl.tile_p == 128 ? g.sk_p128 : pl.tile_p == 64 ? g.sk_p64 : pl.tile_p == 32 ? g.sk_p32 : g.sk_p16);
  g.sk_multi += pl.tiles > pl.grid;
  g.sk_tail += p.s.pixels() % pl.tile_p != 0;
  return true;
}

// pass_layout >= 0 (small-K variants, a case whose conv is the second part of the concat): the channels
// before the conv's come from a passthrough tensor in that layout, fused into the kernel's store; y must
// then hold it at its shuffled columns, bit for bit. out_layout >= 0: y's own layout (default: x's).
template <class T>
void run_fwd(const Case& c, int layout, int variant, const Epi& ep, std::mt19937& rng, int sms = 3,
             int pass_layout = -1, int out_layout = -1) {
  const int cgi = c.cin / c.groups, cgo = c.cout / c.groups;
  const bool with_pass = pass_layout >= 0;
  Tensor4<T> x(c.n, c.cin, c.h, c.w, layout), w(c.cout, cgi, 1, 1, kNCHW),
      y(c.n, c.total(), c.h, c.w, out_layout >= 0 ? out_layout : layout),
      pass(c.n, with_pass ? c.before : 1, c.h, c.w, with_pass ? pass_layout : kNHWC);
  x.fill_random(rng);
  w.fill_random(rng);
  pass.fill_random(rng);
  y.fill_nan();
  std::vector<T> bias(c.cout);
  for (auto& b : bias) b = Num<T>::from_float(std::uniform_real_distribution<float>(-1, 1)(rng));
  Vec1 scale, shift;
  scale.make<T>(c.cout, ep.scale, ep.f32_vecs, 1.0f, rng);
  shift.make<T>(c.cout, ep.shift, ep.f32_vecs, 0.0f, rng);

  const GpwFwdParams<T> p{c.shape(), x.ptr,        x.st,         w.ptr,   w.st, ep.bias ? bias.data() : nullptr,
                          1,         scale.view(), shift.view(), ep.relu, y.ptr, y.st};
  const bool m_fast = !y.channels_fast();
  constexpr int V = 16 / sizeof(T);
  if (variant == 0) replay(GpwFwdProblem<T, Fast::kRow, 1>::make(p, m_fast));
  if (variant == 1) replay(GpwFwdProblem<T, Fast::kK, 1>::make(p, m_fast));
  if (variant == 2) replay(GpwFwdProblem<T, Fast::kK, V>::make(p, m_fast));
  if (variant >= 3) {
    const bool nhwc = layout == kNHWC || layout == kNHWCSlice || layout == kNHWCPadded;
    // mma (16-bit, even cg_in; variant 5 forces FMA) takes up to 256 input channels per group, FMA 64.
    const int cgi = c.cin / c.groups;
    const bool mma = sizeof(T) == 2 && cgi % 2 == 0 && variant != 5;
    bool fits = nhwc && cgi <= (mma ? kGpwSmallKMaxCgInMma : kGpwSmallKMaxCgIn);
    GpwSmallKProblem<T> q = gpw_smallk_fwd_problem(p);
    if (with_pass) {
      // fused when the passthrough is channels_last and y a dense, aligned channels_last slab
      q.pass = pass.ptr;
      q.pss = pass.st;
      q.c_pass = c.before;
      fits = fits && c.after == 0 && pass_layout != kNCHW && pass_layout != kNCHWView && y.st.w == c.total() &&
             y.channels_fast();
    }
    if (!run_smallk(q, SmallKRun{variant, sms}, fits, c.name)) return;
  }
  g_paths.skp_runs += with_pass;
  ++g_runs;
  g_paths.fwd_vec += variant == 2;

  std::vector<char> stored(c.total(), 0);
  for (int co = 0; co < c.cout; ++co) stored[c.dest(co)] = 1;
  int bad = 0;
  if (with_pass) {  // the passthrough's channel pc is channel pc of the concatenated order: copied exactly
    const int pg = c.total() / c.shuffle_groups;
    for (int pc = 0; pc < c.before; ++pc) {
      const int d = (pc % pg) * c.shuffle_groups + pc / pg;
      stored[d] = 1;
      for (int n = 0; n < c.n; ++n)
        for (int py = 0; py < c.h; ++py)
          for (int px = 0; px < c.w; ++px) {
            const T a = pass.at(n, pc, py, px), b = y.at(n, d, py, px);
            if (std::memcmp(&a, &b, sizeof(T)) != 0 && bad++ < 5)
              std::printf("  fwd %s pass %s var=%d y[%d,%d->%d,%d,%d]=%g pass=%g\n", c.name,
                          layout_name(pass_layout), variant, n, pc, d, py, px, double(Num<T>::to_float(b)),
                          double(Num<T>::to_float(a)));
          }
    }
  }
  for (int n = 0; n < c.n; ++n)
    for (int co = 0; co < c.cout; ++co)
      for (int py = 0; py < c.h; ++py)
        for (int px = 0; px < c.w; ++px) {
          const int g = co / cgo;
          double acc = 0, mag = 0;
          for (int ci = 0; ci < cgi; ++ci) {
            const double t = double(x.get(n, g * cgi + ci, py, px)) * w.get(co, ci, 0, 0);
            acc += t;
            mag += std::fabs(t);
          }
          const double b = ep.bias ? Num<T>::to_float(bias[co]) : 0.0;
          const double s = scale.at(co, 1.0), sh = shift.at(co, 0.0);
          double ref = (acc + b) * s + sh;
          if (ep.relu && ref < 0) ref = 0;
          mag = (mag + std::fabs(b)) * std::fabs(s) + std::fabs(sh);
          const float got = y.get(n, c.dest(co), py, px);
          if (!close<T>(ref, mag, got) && bad++ < 5)
            std::printf("  fwd %s %s var=%d y[%d,%d->%d,%d,%d]=%g ref=%g\n", c.name, layout_name(layout), variant,
                        n, co, c.dest(co), py, px, got, ref);
        }
  // Channels of the other concatenated branch must stay untouched (NaN).
  int stray = 0;
  y.each([&](int n, int ch, int py, int px) { stray += !stored[ch] && !std::isnan(y.get(n, ch, py, px)); });
  if (bad || stray || y.clobbered()) {
    ++g_failures;
    std::printf("FAIL fwd %s %s variant=%d bias=%d scale=%d shift=%d relu=%d f32vec=%d: %d mismatches, %d stray, "
                "%d clobbered\n",
                c.name, layout_name(layout), variant, ep.bias, ep.scale, ep.shift, ep.relu, ep.f32_vecs, bad, stray,
                y.clobbered());
  }
}

// dy and the saved output (ReLU mask) with `total` channels; the reference gradient wrt the conv output.
template <class T>
struct GradInputs {
  Tensor4<T> dy, out;
  Vec1 scale;
  GradInputs(const Case& c, int layout, int out_layout, bool relu, bool has_scale, bool f32, std::mt19937& rng)
      : dy(c.n, c.total(), c.h, c.w, layout), out(c.n, c.total(), c.h, c.w, out_layout) {
    dy.fill_random(rng);
    out.fill_random(rng);
    scale.make<T>(c.cout, has_scale, f32, 1.0f, rng);
    (void)relu;
  }
  // g[n, co, p, q] (scaled), as the backward of the fused epilogue defines it
  double g(const Case& c, bool relu, int n, int co, int py, int px) const {
    const int d = c.dest(co);
    if (relu && !(out.get(n, d, py, px) > 0.0f)) return 0.0;
    return double(dy.get(n, d, py, px)) * scale.at(co, 1.0);
  }
};

// Variants 0 / 1: the GEMM's two gather maps; 3-6: the small-K kernel as run_smallk names them, with the
// saved output (ReLU mask) in `mask_layout` (-1: the GEMM runs' NCHW / NHWC counterpart of `layout`).
template <class T>
void run_dgrad(const Case& c, int layout, int variant, bool relu, bool has_scale, bool f32, std::mt19937& rng,
               int sms = 3, int mask_layout = -1) {
  const int cgi = c.cin / c.groups, cgo = c.cout / c.groups;
  if (mask_layout < 0) mask_layout = layout == kNHWC ? kNCHW : kNHWC;
  GradInputs<T> gi(c, layout, mask_layout, relu, has_scale, f32, rng);
  Tensor4<T> w(c.cout, cgi, 1, 1, kNCHW), dx(c.n, c.cin, c.h, c.w, layout);
  w.fill_random(rng);
  dx.fill_nan();
  const GpwDgradParams<T> p{c.shape(), gi.dy.ptr, gi.dy.st, relu ? gi.out.ptr : nullptr, gi.out.st,
                            w.ptr,     w.st,      gi.scale.view(), dx.ptr, dx.st};
  const bool m_fast = !dx.channels_fast();
  if (variant == 0) replay(GpwDgradProblem<T, Fast::kRow>::make(p, m_fast));
  if (variant == 1) replay(GpwDgradProblem<T, Fast::kK>::make(p, m_fast));
  if (variant >= 3) {
    auto cl = [](int l) { return l == kNHWC || l == kNHWCSlice || l == kNHWCPadded; };
    // The turned-around problem reduces over cg_out: mma (16-bit unless variant 5 forces FMA) up to 256,
    // FMA up to 64; dy, dx and (with ReLU) the saved output must be channels_last.
    const bool mma = sizeof(T) == 2 && variant != 5;
    const bool fits = cl(layout) && (!relu || cl(mask_layout)) && cgo <= (mma ? kGpwSmallKMaxCgInMma : kGpwSmallKMaxCgIn);
    if (!run_smallk(gpw_smallk_dgrad_problem(p), SmallKRun{variant, sms}, fits, c.name)) return;
  }
  ++g_runs;
  int bad = 0;
  dx.each([&](int n, int ch, int py, int px) {
    const int g = ch / cgi, ci = ch % cgi;
    double ref = 0, mag = 0;
    for (int j = 0; j < cgo; ++j) {
      const int co = g * cgo + j;
      const double t = gi.g(c, relu, n, co, py, px) * w.get(co, ci, 0, 0);
      ref += t;
      mag += std::fabs(t);
    }
    const float got = dx.get(n, ch, py, px);
    if (!close<T>(ref, mag, got) && bad++ < 5)
      std::printf("  dgrad %s %s var=%d dx[%d,%d,%d,%d]=%g ref=%g\n", c.name, layout_name(layout), variant, n, ch,
                  py, px, got, ref);
  });
  if (bad || dx.clobbered()) {
    ++g_failures;
    std::printf("FAIL dgrad %s %s variant=%d relu=%d scale=%d f32=%d mask=%s: %d mismatches, %d clobbered\n",
                c.name, layout_name(layout), variant, relu, has_scale, f32, layout_name(mask_layout), bad,
                dx.clobbered());
  }
}

// Variants 0 / 1: the GEMM's two gather maps; 3 = the small-K kernel as planned, 4 = forced element copies,
// 5 = forced 16-pixel tiles and 2 splits (several tiles per split); the saved output in `mask_layout` (-1: as the GEMM runs).
template <class T>
void run_wgrad(const Case& c, int layout, int variant, bool relu, bool has_scale, bool f32, int force_splits,
               std::mt19937& rng, int mask_layout = -1) {
  using Tile = GemmTile<T>;
  const int cgi = c.cin / c.groups, cgo = c.cout / c.groups;
  if (mask_layout < 0) mask_layout = layout == kNHWC ? kNCHWView : kNHWC;
  GradInputs<T> gi(c, layout, mask_layout, relu, has_scale, f32, rng);
  Tensor4<T> x(c.n, c.cin, c.h, c.w, layout), dw(c.cout, cgi, 1, 1, kNCHW);
  x.fill_random(rng);
  dw.fill_nan();
  SplitKPlan plan = gpw_wgrad_plan(c.shape(), Tile::kBM, Tile::kBN, Tile::kBK);
  if (force_splits > 0) {
    const int k_tiles = (c.n * c.h * c.w + Tile::kBK - 1) / Tile::kBK;
    const int tps = (k_tiles + force_splits - 1) / force_splits;
    plan = SplitKPlan{(k_tiles + tps - 1) / tps, tps * Tile::kBK};
  }
  GpwWgradParams<T> p{c.shape(), gi.dy.ptr, gi.dy.st, relu ? gi.out.ptr : nullptr, gi.out.st, x.ptr,
                      x.st,      gi.scale.view(), nullptr, plan.splits, plan.k_per_split, dw.ptr, dw.st};
  GpwWgradPlan wp;
  if (variant >= 3) {
    auto cl = [](int l) { return l == kNHWC || l == kNHWCSlice || l == kNHWCPadded; };
    wp = plan_gpw_smallk_wgrad(p, variant == 5 ? 16 : 0, variant == 4, variant == 5 ? 2 : 0);
    const int items = c.groups * ((cgo + 15) / 16) * (((cgi + 7) / 8 + kGpwWgradItemN - 1) / kGpwWgradItemN);
    const bool fits = sizeof(T) == 2 && cl(layout) && (!relu || cl(mask_layout)) &&
                      items <= kGpwWgradItems * (kGpwSmallKThreads / 32);
    if (wp.use() != fits) {
      ++g_failures;
      std::printf("FAIL smallk wgrad %s %s variant=%d: plan %s (%s)\n", c.name, layout_name(layout), variant,
                  wp.use() ? "accepted a problem it must leave to the GEMM" : "refused", wp.why_not ? wp.why_not : "");
    }
    if (!wp.use()) return;
    p.splits = wp.splits;
  }
  std::vector<float> ws(size_t(p.splits) * c.cout * cgi, NAN);
  p.workspace = ws.data();
  if (variant == 0) replay(GpwWgradProblem<T, Fast::kK>::make(p));
  if (variant == 1) replay(GpwWgradProblem<T, Fast::kRow>::make(p));
  if constexpr (sizeof(T) == 2) {
    if (variant >= 3) {
      replay_smallk_wgrad(GpwSmallKWgrad<T>::make(p, wp));
      auto& g = g_paths;
      ++(wp.in_mode == kGpwInDense16 ? g.skw_dense : g.skw_scalar);
      g.skw_mask += relu;
      g.skw_cat += c.total() != c.cout;
      g.skw_tail += c.n * c.h * c.w % wp.tile_p != 0;
      g.skw_multi += wp.tiles_per_split > 1;
      g.skw_slots += wp.items > kGpwSmallKThreads / 32;
      g.skw_chunks += wp.chunks > 1;
      for (int ch : {wp.ch_dy, wp.ch_x}) ++(ch == 8 ? g.skw_ch8 : ch == 4 ? g.skw_ch4 : ch == 2 ? g.skw_ch2 : g.skw_ch1);
    }
  }
  int unwritten = 0;
  for (float v : ws) unwritten += std::isnan(v) ? 1 : 0;
  replay_reduce(gpw_wgrad_reduce(p));
  ++g_runs;
  int bad = 0;
  dw.each([&](int co, int ci, int, int) {
    const int g = co / cgo;
    double ref = 0, mag = 0;
    for (int n = 0; n < c.n; ++n)
      for (int py = 0; py < c.h; ++py)
        for (int px = 0; px < c.w; ++px) {
          const double t = gi.g(c, relu, n, co, py, px) * x.get(n, g * cgi + ci, py, px);
          ref += t;
          mag += std::fabs(t);
        }
    const float got = dw.get(co, ci, 0, 0);
    if (!close<T>(ref, mag, got) && bad++ < 5)
      std::printf("  wgrad %s %s var=%d splits=%d dw[%d,%d]=%g ref=%g\n", c.name, layout_name(layout), variant,
                  p.splits, co, ci, got, ref);
  });
  if (bad || unwritten || dw.clobbered()) {
    ++g_failures;
    std::printf("FAIL wgrad %s %s variant=%d splits=%d relu=%d scale=%d: %d mismatches, %d partials unwritten\n",
                c.name, layout_name(layout), variant, p.splits, relu, has_scale, bad, unwritten);
  }
}

// ---- channel shuffle ------------------------------------------------------------------------------

int g_shuffle_tiled = 0;  // tiled-kernel replays (the suite fails if none ran)

template <class E, int V, bool kPixelFast>
void replay_shuffle(const ChannelShuffleParams<E>& p) {
  for (int64_t e = 0; e < p.items; ++e) ChannelShuffleBody<E, V, kPixelFast>::run(p, e);
}

// channel_shuffle_tile_kernel, CTA by CTA: an exact-size shared buffer (ASan sees overruns) filled
// with 0xff (a NaN word in every dtype, and kNoSource in the table) before the table is built, and
// the run region re-poisoned before every tile (a stale word from the previous tile cannot pass).
// Within a phase the threads run one after the other; the phases are the kernel's barrier intervals.
template <class E, bool kMasked, bool kGather>
void replay_shuffle_tiled(const ChannelShufflePlan& plan, const ChannelShuffleTileParams<E>& p, int ctas) {
  using Tile = ChannelShuffleTile<E, kMasked, kGather>;
  unsigned char* smem = static_cast<unsigned char*>(std::malloc(static_cast<size_t>(plan.smem_bytes)));
  const int grid = std::min(ctas, p.tiles);
  for (int b = 0; b < grid; ++b) {
    std::memset(smem, 0xff, static_cast<size_t>(plan.smem_bytes));
    for (int t = 0; t < Tile::kThreads; ++t) Tile::build_table(p, smem, t);
    for (int tile = b; tile < p.tiles; tile += grid) {
      std::memset(smem, 0xff, static_cast<size_t>(plan.table_offset));
      for (int t = 0; t < Tile::kThreads; ++t) Tile::load(p, smem, tile, t);
      for (int t = 0; t < Tile::kThreads; ++t) Tile::store(p, smem, tile, t);
    }
  }
  std::free(smem);
}

// One channel_map call as csrc/cuda/channel_map.cu makes it: `plan` decides the kernel (tiled, or the
// generic one with plan.vec / plan.pixel_fast); ctas bounds the tiled kernel's persistent grid.
template <class T>
void replay_channel_map(const ChannelShufflePlan& plan, const Tensor4<T>& src, Tensor4<T>& dst, int n, int h, int w,
                        int ch, int total, int groups, int offset, bool scatter, int ctas) {
  using E = std::conditional_t<sizeof(T) == 2, uint16_t, uint32_t>;
  constexpr int V = 16 / sizeof(T);
  const int pixels = n * h * w;
  if (plan.fill && !plan.tiled) {  // the generic kernel's fill body (channel_shuffle_fill_kernel)
    const auto p = make_channel_shuffle_fill<E>(reinterpret_cast<const E*>(src.ptr), src.st,
                                                reinterpret_cast<E*>(dst.ptr), dst.st, n, h, w, ch, total, groups,
                                                offset, plan.vec);
    // The kernel csrc launches (launch_fill): 16- or 8-byte vectors, the groups == 2 specialisation, else the
    // runtime one.
    auto body = [&](auto vtag) {
      constexpr int VV = decltype(vtag)::value;
      if (groups == 2) {
        for (int64_t e = 0; e < p.items; ++e) ChannelShuffleFillBody<E, VV, 2>::run(p, e);
      } else {
        for (int64_t e = 0; e < p.items; ++e) ChannelShuffleFillBody<E, VV, 0>::run(p, e);
      }
    };
    if (plan.vec == V) {
      body(std::integral_constant<int, V>{});
    } else if (plan.vec == V / 2) {
      body(std::integral_constant<int, V / 2>{});
      ++g_paths.shuffle_fill_half_vec;
    } else {
      std::printf("FAIL fill plan with %d words per vector\n", plan.vec);
      ++g_failures;
      return;
    }
    if (groups == 2) ++g_paths.shuffle_fill_vec_g2;
    if (p.half_run) ++g_paths.shuffle_fill_half_run;
    ++g_paths.shuffle_fill_vec;
    return;
  }
  if (plan.tiled) {
    g_paths.shuffle_fill_tiled += plan.fill;
    const auto p = make_channel_shuffle_tile_params<E>(plan, reinterpret_cast<const E*>(src.ptr),
                                                       reinterpret_cast<E*>(dst.ptr), pixels, ch, total, groups,
                                                       offset);
    if (scatter) {
      if (plan.masked) replay_shuffle_tiled<E, true, false>(plan, p, ctas);
      else replay_shuffle_tiled<E, false, false>(plan, p, ctas);
    } else {
      if (plan.masked) replay_shuffle_tiled<E, true, true>(plan, p, ctas);
      else replay_shuffle_tiled<E, false, true>(plan, p, ctas);
    }
    ++g_shuffle_tiled;
    return;
  }
  const ChannelShuffleParams<E> p =
      make_channel_shuffle_params<E>(plan, reinterpret_cast<const E*>(src.ptr), src.st, reinterpret_cast<E*>(dst.ptr),
                                     dst.st, n, h, w, ch, total, groups, offset, scatter);
  if (plan.vec == 1) {
    if (plan.pixel_fast) replay_shuffle<E, 1, true>(p);
    else replay_shuffle<E, 1, false>(p);
  } else {
    if (plan.pixel_fast) replay_shuffle<E, V, true>(p);
    else replay_shuffle<E, V, false>(p);
    ++(plan.pixel_fast ? g_paths.shuffle_vec_pixel : g_paths.shuffle_vec_channel);
  }
}

// dst must hold exactly the mapped copy of src: every mapped element equal (bitwise via the float
// value; NaN-poisoned dst fails), no other element of dst written, nothing outside the view touched.
// fill (a shuffle-cat half whose other channels a later kernel writes): every element of dst written
// (whole 16-byte vectors), the mapped ones equal, nothing outside the view touched.
template <class T>
int check_channel_map(const Tensor4<T>& src, Tensor4<T>& dst, int ch, int total, int groups, int offset, bool scatter,
                      const char* what, bool fill = false) {
  const int pg = total / groups;
  auto dest = [&](int c) { return ((c + offset) % pg) * groups + (c + offset) / pg; };
  int bad = 0;
  for (int n = 0; n < src.d[0]; ++n)
    for (int k = 0; k < ch; ++k)
      for (int py = 0; py < src.d[2]; ++py)
        for (int px = 0; px < src.d[3]; ++px) {
          const float want = scatter ? src.get(n, k, py, px) : src.get(n, dest(k), py, px);
          const float got = scatter ? dst.get(n, dest(k), py, px) : dst.get(n, k, py, px);
          if (!(want == got) && bad++ < 3) std::printf("  shuffle %s k=%d want %g got %g\n", what, k, want, got);
        }
  int written = 0;  // every written element is one of the checked ones: count them
  dst.each([&](int n, int k, int py, int px) { written += !std::isnan(dst.get(n, k, py, px)); });
  const int want_written = (fill ? total : ch) * src.d[0] * src.d[2] * src.d[3];
  if (written != want_written) std::printf("  shuffle %s: %d written of %d\n", what, written, want_written);
  return bad + (written != want_written) + dst.clobbered();
}

// Copies `channels` channels between a channels-wide tensor and a total-wide one, as csrc/ plans it
// (and, forced, with every other variant the data allows).
template <class T>
void run_shuffle(const Case& c, int src_layout, int dst_layout, bool scatter, std::mt19937& rng) {
  const int ch = c.cout, total = c.total();
  for (int forced = 0; forced < 5; ++forced) {
    if (forced == 4 && !(scatter && ch < total)) break;  // 4: the fill plan of a shuffle-cat half
    Tensor4<T> src(c.n, scatter ? ch : total, c.h, c.w, src_layout), dst(c.n, scatter ? total : ch, c.h, c.w, dst_layout);
    src.fill_random(rng);
    dst.fill_nan();
    const ChannelShufflePlan real = plan_channel_shuffle(c.n, c.h, c.w, ch, total, src.st, src.ptr, dst.st, dst.ptr,
                                                         sizeof(T), scatter, forced == 4);
    // forced 0: the real plan; 1, 2: scalar generic copies along each mapping (always valid);
    // 3: the generic kernel with the real plan's vector width (what ran before the tiled kernel)
    ChannelShufflePlan plan = real;
    if (forced == 1) plan = ChannelShufflePlan{1, real.pixel_fast};
    if (forced == 2) plan = ChannelShufflePlan{1, !real.pixel_fast};
    if (forced == 3) plan = ChannelShufflePlan{real.vec, real.pixel_fast};
    replay_channel_map<T>(plan, src, dst, c.n, c.h, c.w, ch, total, c.shuffle_groups, c.before, scatter, 1 << 20);
    ++g_runs;
    if (check_channel_map<T>(src, dst, ch, total, c.shuffle_groups, c.before, scatter, c.name, plan.fill)) {
      ++g_failures;
      std::printf("FAIL shuffle %s %s->%s scatter=%d vec=%d pixel_fast=%d tiled=%d fill=%d\n", c.name,
                  layout_name(src_layout), layout_name(dst_layout), scatter, plan.vec, plan.pixel_fast, plan.tiled,
                  plan.fill);
    }
  }
}

// The tiled kernel over the shapes that matter (ShuffleNetV2's 58/116/232-channel halves, odd channel
// counts, pixels not a multiple of any tile, one pixel to thousands), both directions, the
// shuffle-cat halves (channels < total, either offset), every plan the data allows: the real tile
// size, the smallest (P = V: every tile boundary inside a vector), an odd multiple of V, and a
// persistent grid of 3 CTAs (grid-stride over the tiles). Views that are not dense channels-fast must
// take the generic kernel, and still be right.
template <class T>
bool dense_channels_last(Tensor4<T>& t) {
  bool ok = reinterpret_cast<uintptr_t>(t.ptr) % 16 == 0;
  t.each([&](int n, int c, int y, int x) {
    ok = ok && t.off(n, c, y, x) == ((int64_t{n} * t.d[2] + y) * t.d[3] + x) * t.d[1] + c;
  });
  return ok;
}

struct ShuffleShape {
  int n, h, w, total, groups, channels, offset;
};

template <class T>
void run_shuffle_tiled_suite(std::mt19937& rng) {
  constexpr int V = 16 / sizeof(T);
  const ShuffleShape shapes[] = {
      {2, 5, 7, 116, 2, 116, 0},  {1, 7, 7, 58, 2, 58, 0},    {3, 3, 5, 24, 3, 24, 0},   {2, 3, 3, 3, 3, 3, 0},
      {1, 4, 5, 240, 4, 240, 0},  {1, 3, 3, 240, 8, 240, 0},  {1, 1, 1, 58, 2, 58, 0},   {1, 1, 3, 24, 8, 24, 0},
      {4, 28, 28, 116, 2, 116, 0}, {1, 9, 13, 232, 2, 232, 0}, {2, 5, 5, 116, 2, 58, 0},  {2, 5, 5, 116, 2, 58, 58},
      {1, 7, 9, 24, 4, 12, 6},    {1, 6, 7, 240, 3, 80, 80},  {2, 3, 7, 3, 3, 1, 2},
      // shuffle-cat halves with total % 8 == 0 (the 16-byte fill body on 16-bit types too; 116 above: 8-byte)
      {2, 3, 5, 464, 2, 232, 0},  {1, 4, 3, 48, 2, 24, 24},   {1, 3, 5, 48, 3, 16, 8},
      // groups 2, a source of exactly per_group channels but at an offset that is neither half: not one
      // access per vector (ChannelShuffleParams::half_run false)
      {1, 3, 4, 48, 2, 24, 8},
  };
  for (const ShuffleShape& s : shapes) {
    for (int scatter = 0; scatter < 2; ++scatter) {
      const int in_c = scatter ? s.channels : s.total, out_c = scatter ? s.total : s.channels;
      for (int variant = 0; variant < 4; ++variant) {
        Tensor4<T> src(s.n, in_c, s.h, s.w, kNHWC), dst(s.n, out_c, s.h, s.w, kNHWC);
        src.fill_random(rng);
        dst.fill_nan();
        ChannelShufflePlan plan = plan_channel_shuffle(s.n, s.h, s.w, s.channels, s.total, src.st, src.ptr, dst.st,
                                                       dst.ptr, sizeof(T), scatter);
        if (!plan.tiled) {
          ++g_failures;
          std::printf("FAIL shuffle tiled: dense NHWC %dx%dx%dx%d (ch %d of %d) not planned tiled\n", s.n, s.total,
                      s.h, s.w, s.channels, s.total);
          continue;
        }
        int ctas = 1 << 20;
        if (variant == 1 || variant == 2)  // smallest and an odd multiple of V
          plan_channel_shuffle_tile(plan, s.n, s.h, s.w, s.channels, s.total, src.st, src.ptr, dst.st, dst.ptr,
                                    sizeof(T), scatter, variant == 1 ? V : 3 * V);
        if (variant == 3) ctas = 3;
        replay_channel_map<T>(plan, src, dst, s.n, s.h, s.w, s.channels, s.total, s.groups, s.offset, scatter, ctas);
        ++g_runs;
        char what[96];
        std::snprintf(what, sizeof what, "tiled %dx%dx%dx%d ch=%d off=%d g=%d", s.n, s.total, s.h, s.w, s.channels,
                      s.offset, s.groups);
        if (check_channel_map<T>(src, dst, s.channels, s.total, s.groups, s.offset, scatter, what)) {
          ++g_failures;
          std::printf("FAIL shuffle %s scatter=%d P=%d L=%d masked=%d ctas=%d\n", what, scatter, plan.tile_pixels,
                      plan.period, plan.masked, ctas);
        }
      }
      // Fill (scatter of a shuffle-cat half whose other channels are written later): dense NHWC takes the
      // unmasked tiled kernel with a filler table; a channel slice source (x.chunk(2, 1) of a channels_last
      // tensor, not dense) the generic 16-byte fill body when dst allows, padded / NCHW dst the word path.
      if (scatter && s.channels < s.total) {
        const int fl[][2] = {{kNHWC, kNHWC}, {kNHWCSlice, kNHWC}, {kNHWCPadded, kNHWC}, {kNCHW, kNHWC},
                             {kNHWCSlice, kNHWCPadded}, {kNHWC, kNCHW}};
        for (const auto& l : fl) {
          for (int variant = 0; variant < 2; ++variant) {
            Tensor4<T> src(s.n, in_c, s.h, s.w, l[0]), dst(s.n, out_c, s.h, s.w, l[1]);
            src.fill_random(rng);
            dst.fill_nan();
            ChannelShufflePlan plan = plan_channel_shuffle(s.n, s.h, s.w, s.channels, s.total, src.st, src.ptr,
                                                           dst.st, dst.ptr, sizeof(T), true, true);
            // 16-byte Q vectors, else 8-byte ones (116 16-bit channels: 14.5 16-byte vectors a pixel).
            const bool dst_vec = dst.st.c == 1 && ((s.total % V == 0 && dst.vec_ok(V)) ||
                                                   (s.total % (V / 2) == 0 && dst.vec_ok(V / 2)));
            const bool want_fill = plan.tiled || dst_vec;
            if (variant == 1 && plan.tiled)  // the smallest tiles: every tile boundary inside a vector
              plan_channel_shuffle_tile(plan, s.n, s.h, s.w, s.channels, s.total, src.st, src.ptr, dst.st, dst.ptr,
                                        sizeof(T), true, V);
            replay_channel_map<T>(plan, src, dst, s.n, s.h, s.w, s.channels, s.total, s.groups, s.offset, true,
                                  variant == 1 ? 3 : 1 << 20);
            ++g_runs;
            if (plan.fill != want_fill || (plan.tiled && plan.masked) ||
                check_channel_map<T>(src, dst, s.channels, s.total, s.groups, s.offset, true, "fill", plan.fill)) {
              ++g_failures;
              std::printf("FAIL shuffle fill %s->%s %dx%dx%dx%d ch=%d off=%d g=%d tiled=%d fill=%d\n",
                          layout_name(l[0]), layout_name(l[1]), s.n, s.total, s.h, s.w, s.channels, s.offset,
                          s.groups, plan.tiled, plan.fill);
            }
          }
        }
      }
      // Strided / misaligned views: the generic kernel.
      const int layouts[][2] = {{kNHWCSlice, kNHWC}, {kNHWC, kNHWCPadded}, {kNCHW, kNHWC}, {kNHWC, kNCHWView}};
      for (const auto& l : layouts) {
        Tensor4<T> src(s.n, in_c, s.h, s.w, l[0]), dst(s.n, out_c, s.h, s.w, l[1]);
        src.fill_random(rng);
        dst.fill_nan();
        const ChannelShufflePlan plan = plan_channel_shuffle(s.n, s.h, s.w, s.channels, s.total, src.st, src.ptr,
                                                             dst.st, dst.ptr, sizeof(T), scatter);
        // Tiled exactly when both views are dense channels-fast and aligned, by brute force over the
        // elements (a 1-pixel or 1-channel NCHW tensor is one).
        const bool may_tile = dense_channels_last(src) && dense_channels_last(dst);
        replay_channel_map<T>(plan, src, dst, s.n, s.h, s.w, s.channels, s.total, s.groups, s.offset, scatter,
                              1 << 20);
        ++g_runs;
        if (plan.tiled != may_tile ||
            check_channel_map<T>(src, dst, s.channels, s.total, s.groups, s.offset, scatter, "strided")) {
          ++g_failures;
          std::printf("FAIL shuffle strided %s->%s %dx%dx%dx%d ch=%d scatter=%d tiled=%d\n", layout_name(l[0]),
                      layout_name(l[1]), s.n, s.total, s.h, s.w, s.channels, scatter, plan.tiled);
        }
      }
    }
  }
}

template <class T>
void run_case(const Case& c, std::mt19937& rng) {
  constexpr int V = 16 / sizeof(T);
  const int layouts[] = {kNCHW, kNHWC, kNCHWView, kNHWCSlice, kNHWCPadded};
  const Epi epis[] = {
      {false, false, false, false, false},
      {true, false, false, true, false},
      {false, true, true, true, true},
      {true, true, true, false, false},
  };
  int e = 0;
  for (int layout : layouts) {
    const bool nhwc = layout == kNHWC || layout == kNHWCSlice || layout == kNHWCPadded;
    const Epi& ep = epis[e++ % 4];
    run_fwd<T>(c, layout, nhwc ? 1 : 0, ep, rng);
    if (layout == kNCHW || layout == kNHWC) run_fwd<T>(c, layout, nhwc ? 0 : 1, epis[e % 4], rng);
    if (layout == kNHWC || layout == kNHWCPadded) {
      Tensor4<T> probe(c.n, c.cin, c.h, c.w, layout);
      if ((c.cin / c.groups) % V == 0 && probe.vec_ok(V)) run_fwd<T>(c, layout, 2, epis[(e + 1) % 4], rng);
    }
    run_fwd<T>(c, layout, 3, epis[(e + 2) % 4], rng);  // small-K: channels_last runs it, NCHW must be refused
    const bool relu = e % 2 == 0, scale = e % 3 != 0, f32 = e % 2 == 1;
    run_dgrad<T>(c, layout, nhwc ? 1 : 0, relu, scale, f32, rng);
    run_wgrad<T>(c, layout, nhwc ? 1 : 0, !relu, scale, !f32, 0, rng);
    if (layout == kNCHW || layout == kNHWC) {
      run_dgrad<T>(c, layout, nhwc ? 0 : 1, !relu, !scale, f32, rng);
      run_wgrad<T>(c, layout, nhwc ? 0 : 1, relu, !scale, f32, 3, rng);
    }
    run_shuffle<T>(c, layout, layout, e % 2 == 0, rng);
    run_shuffle<T>(c, layout, layout == kNCHW ? kNHWC : kNCHW, e % 2 == 1, rng);
  }
}

// The small-K forward on its own cases (larger channel counts, pixels not a multiple of any tile):
// every channels_last layout with the plan's choice, the forced element paths and the other tile /
// column width, a single-CTA grid (every tile through one CTA), and the NCHW fallback.
template <class T>
void run_smallk_case(const Case& c, std::mt19937& rng) {
  const Epi epis[] = {
      {true, true, true, true, true},   {false, false, false, false, false}, {true, false, false, true, false},
      {false, true, true, false, false}, {true, true, false, true, true},
  };
  int e = 0;
  for (int layout : {kNHWC, kNHWCPadded, kNHWCSlice}) run_fwd<T>(c, layout, 3, epis[e++ % 5], rng);
  run_fwd<T>(c, kNHWC, 4, epis[e++ % 5], rng);
  run_fwd<T>(c, kNHWC, 5, epis[e++ % 5], rng);
  run_fwd<T>(c, kNHWC, 6, epis[e++ % 5], rng, 2);
  run_fwd<T>(c, kNHWC, 3, epis[e++ % 5], rng, 1);
  run_fwd<T>(c, kNCHW, 3, epis[e++ % 5], rng);  // must be refused (plan), never replayed
  if (c.before > 0 && c.after == 0) {
    // The fused passthrough (shuffle_cat_pointwise): dense (one run), padded (row pieces), sliced (element
    // loads); forced element paths, FMA, 16-pixel tiles, one CTA; refused for an NCHW passthrough or a
    // padded y (the caller then fills y separately).
    for (int pl : {kNHWC, kNHWCPadded, kNHWCSlice}) run_fwd<T>(c, kNHWC, 3, epis[e++ % 5], rng, 3, pl);
    run_fwd<T>(c, kNHWCSlice, 3, epis[e++ % 5], rng, 3, kNHWCPadded, kNHWC);
    run_fwd<T>(c, kNHWC, 4, epis[e++ % 5], rng, 3, kNHWCPadded);
    run_fwd<T>(c, kNHWC, 5, epis[e++ % 5], rng, 3, kNHWCPadded);
    run_fwd<T>(c, kNHWC, 6, epis[e++ % 5], rng, 2, kNHWC);
    run_fwd<T>(c, kNHWC, 3, epis[e++ % 5], rng, 1, kNHWCPadded);
    run_fwd<T>(c, kNHWC, 3, epis[e++ % 5], rng, 3, kNCHW);                // refused
    run_fwd<T>(c, kNHWC, 3, epis[e++ % 5], rng, 3, kNHWC, kNHWCPadded);   // refused
  }
  // The input grad on the same kernel: ReLU mask in the same layout (dense copies where dy's are), in
  // another channels_last layout (element loads), or NCHW (refused); scale as T or fp32.
  int d = 0;
  for (int layout : {kNHWC, kNHWCPadded, kNHWCSlice}) {
    run_dgrad<T>(c, layout, 3, d % 2 == 0, d % 3 != 1, d % 2 == 1, rng, 3, layout);
    ++d;
  }
  run_dgrad<T>(c, kNHWC, 3, true, true, false, rng, 3, kNHWCPadded);
  run_dgrad<T>(c, kNHWC, 3, true, false, true, rng, 3, kNCHW);  // mask not channels_last: refused
  run_dgrad<T>(c, kNHWC, 3, false, true, true, rng, 3, kNCHW);  // no ReLU: the mask's layout is moot
  run_dgrad<T>(c, kNHWC, 4, true, true, false, rng, 3, kNHWC);
  run_dgrad<T>(c, kNHWC, 5, true, true, true, rng, 3, kNHWC);
  run_dgrad<T>(c, kNHWC, 6, false, true, false, rng, 2, kNHWC);
  run_dgrad<T>(c, kNHWC, 3, true, false, false, rng, 1, kNHWC);
  run_dgrad<T>(c, kNCHW, 3, true, true, false, rng, 3, kNCHW);  // refused
  // The weight grad (16-bit; fp32 must be refused): the same layouts and masks, forced element copies, 16-pixel tiles.
  int w = 0;
  for (int layout : {kNHWC, kNHWCPadded, kNHWCSlice}) {
    run_wgrad<T>(c, layout, 3, w % 2 == 0, w % 3 != 1, w % 2 == 1, 0, rng, layout);
    ++w;
  }
  run_wgrad<T>(c, kNHWC, 3, true, true, false, 0, rng, kNHWCSlice);
  run_wgrad<T>(c, kNHWC, 3, true, false, true, 0, rng, kNCHW);  // mask not channels_last: refused
  run_wgrad<T>(c, kNHWC, 4, true, true, true, 0, rng, kNHWC);
  run_wgrad<T>(c, kNHWC, 5, false, true, false, 0, rng, kNHWC);
  run_wgrad<T>(c, kNCHW, 3, true, true, false, 0, rng, kNCHW);  // refused
}

template <class T>
void run_all(const std::vector<Case>& cases) {
  std::mt19937 rng(4321);
  for (const Case& c : cases) run_case<T>(c, rng);
}

template <class T>
void run_all_smallk(const std::vector<Case>& cases) {
  std::mt19937 rng(987);
  for (const Case& c : cases) run_smallk_case<T>(c, rng);
}

void test_shuffle_map() {
  // ShuffleMap against the plain formula, including the no-shuffle and concat cases.
  const int shapes[][3] = {{24, 3, 0}, {24, 8, 0}, {10, 2, 4}, {7, 1, 0}, {240, 3, 120}, {12, 12, 5}};
  for (const auto& s : shapes) {
    const ShuffleMap m(s[0], s[1], s[2]);
    const int pg = s[0] / s[1];
    for (int c = 0; c + s[2] < s[0]; ++c) {
      const int d = c + s[2], want = (d % pg) * s[1] + d / pg;
      if (m.dest(c) != want && g_failures++ < 10) std::printf("FAIL map %d %d %d c=%d\n", s[0], s[1], s[2], c);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // `smallk`: only the small-K forward (quick runs with injected bugs)
  const bool only_smallk = argc > 1 && std::strcmp(argv[1], "smallk") == 0;
  // n cin h w cout groups shuffle_groups before after
  const std::vector<Case> sk_cases = {
      {1, 60, 7, 19, 216, 3, 3, 0, 0, "v1g3_60_216_sh3"},    // 133 px: two tiles, ragged
      {1, 60, 5, 29, 240, 3, 1, 0, 0, "v1g3_60_240"},
      {2, 24, 9, 11, 60, 1, 3, 0, 0, "v1_stem_24_60_sh3"},    // groups 1, shuffled
      {1, 20, 11, 13, 36, 2, 2, 0, 0, "g2_20_36_sh2"},
      {1, 58, 9, 15, 58, 1, 2, 58, 0, "v2_cat_second"},       // conv is the second half of the concat
      {1, 58, 9, 15, 58, 1, 2, 0, 58, "v2_cat_first"},
      {1, 240, 5, 7, 96, 8, 8, 0, 0, "g8_240_96_sh8"},        // cg_in 30, cg_out 12
      {2, 24, 5, 9, 40, 4, 4, 0, 0, "g4_24_40_sh4"},
      {1, 96, 5, 13, 360, 8, 1, 0, 0, "v1g8_96_360"},         // cg_out 45
      {1, 240, 3, 5, 60, 3, 3, 0, 0, "cg80"},                 // cg_in 80: mma only (fp32 FMA: the GEMM)
      {1, 160, 3, 7, 40, 1, 2, 0, 0, "cg160_g1_sh2"},         // 10 k-steps of 16
      {1, 264, 2, 3, 8, 1, 1, 0, 0, "cg264_refused"},         // beyond every bound: the GEMM
      {1, 42, 7, 9, 30, 3, 3, 0, 0, "g3_42_30_sh3"},          // input grad: 30 raw columns, 2-element convert
      {2, 24, 5, 9, 24, 1, 2, 24, 0, "v2_cat_24"},            // fused passthrough: 8-element steps
      {1, 20, 7, 5, 20, 2, 2, 20, 0, "cat_20_g2"},            // fused passthrough: 4-element steps, 8-byte rows
      {1, 30, 5, 7, 15, 3, 2, 15, 0, "cat_15_g3"},            // fused passthrough: odd width, element steps
      {1, 30, 5, 7, 15, 3, 3, 0, 0, "g3_30_15_sh3"},          // input grad: 15 raw columns, element convert
  };
  if (only_smallk) {
    run_all_smallk<float>(sk_cases);
    run_all_smallk<__half>(sk_cases);
    run_all_smallk<__nv_bfloat16>(sk_cases);
    std::printf(g_failures ? "smallk: %d FAILURES in %d runs\n" : "smallk: all %d runs passed\n",
                g_failures ? g_failures : g_runs, g_runs);
    return g_failures ? 1 : 0;
  }
  test_shuffle_map();
  std::printf("shuffle_map: %s\n", g_failures ? "FAILED" : "ok");
  {
    std::mt19937 rng(97);
    run_shuffle_tiled_suite<float>(rng);
    run_shuffle_tiled_suite<__half>(rng);
    run_shuffle_tiled_suite<__nv_bfloat16>(rng);
    std::printf("channel_shuffle tiled: %d tiled replays, %s\n", g_shuffle_tiled, g_failures ? "FAILED" : "ok");
    if (!g_shuffle_tiled) ++g_failures;
  }
  // n cin h w cout groups shuffle_groups before after
  const std::vector<Case> cases = {
      {2, 5, 4, 5, 7, 1, 1, 0, 0, "g1"},
      {2, 6, 3, 5, 10, 2, 2, 0, 0, "g2_s2"},
      {1, 9, 4, 6, 12, 3, 3, 0, 0, "g3_s3"},
      {2, 12, 3, 5, 20, 4, 2, 0, 0, "g4_s2"},
      {1, 16, 3, 4, 24, 8, 8, 0, 0, "g8_s8"},
      {2, 6, 5, 3, 10, 2, 5, 0, 0, "g2_s5"},
      {1, 48, 3, 7, 48, 3, 3, 0, 0, "g3_vec"},   // 16 channels per group: vector loads
      {1, 16, 5, 4, 24, 1, 2, 24, 0, "cat_second"},  // V2 unit: conv is the second half of the concat
      {2, 7, 3, 3, 9, 1, 2, 0, 9, "cat_first"},
      {3, 8, 9, 8, 72, 1, 3, 0, 0, "M_over_tiles"},  // 216 pixels: two M tiles, two N tiles
      {1, 80, 2, 3, 6, 2, 3, 0, 0, "K_many_tiles"},  // 40 channels per group: two K tiles of 32
  };
  run_all<float>(cases);
  std::printf("float: %s\n", g_failures ? "FAILED" : "ok");
  run_all<__half>(cases);
  std::printf("half: %s\n", g_failures ? "FAILED" : "ok");
  run_all<__nv_bfloat16>(cases);
  std::printf("bf16: %s\n", g_failures ? "FAILED" : "ok");
  run_all_smallk<float>(sk_cases);
  run_all_smallk<__half>(sk_cases);
  run_all_smallk<__nv_bfloat16>(sk_cases);
  std::printf("smallk: %s\n", g_failures ? "FAILED" : "ok");
  const auto& k = g_paths;
  std::printf("smallk paths: dense_in=%d scalar_in=%d slab_out=%d scatter_out=%d rc4=%d rc8=%d mma=%d linear_out=%d "
              "padded_rows=%d "
              "p128=%d p64=%d "
              "p32=%d p16=%d multi_tile_ctas=%d ragged=%d\n",
              k.sk_dense, k.sk_scalar, k.sk_slab, k.sk_scatter, k.sk_rc4, k.sk_rc8, k.sk_mma, k.sk_linear, k.sk_padrows, k.sk_p128, k.sk_p64, k.sk_p32,
              k.sk_p16, k.sk_multi, k.sk_tail);
  std::printf("smallk fused passthrough: runs=%d flat=%d rows16=%d rows8=%d rows4=%d scalar=%d "
              "steps 8/4/2/1=%d/%d/%d/%d mma=%d fma=%d\n",
              k.skp_runs, k.skp_flat, k.skp_rows16, k.skp_rows8, k.skp_rows4, k.skp_scalar, k.skp_ch8, k.skp_ch4,
              k.skp_ch2, k.skp_ch1, k.skp_mma, k.skp_fma);
  if (!k.skp_runs || !k.skp_flat || !k.skp_rows16 || !k.skp_rows8 || !k.skp_rows4 || !k.skp_scalar || !k.skp_ch8 ||
      !k.skp_ch4 || !k.skp_ch2 || !k.skp_ch1 || !k.skp_mma || !k.skp_fma) {
    std::printf("FAIL: a fused-passthrough path was never exercised\n");
    ++g_failures;
  }
  std::printf("smallk dgrad paths: mma=%d fma=%d mask_dense=%d mask_scalar=%d concat=%d slab_out=%d convert 8/4/2/1=%d/%d/%d/%d\n",
              k.skd_mma, k.skd_fma, k.skd_mask_dense, k.skd_mask_scalar, k.skd_cat, k.skd_slab, k.skd_ch8, k.skd_ch4,
              k.skd_ch2, k.skd_ch1);
  std::printf("smallk wgrad paths: dense=%d scalar=%d mask=%d concat=%d ragged=%d multi_tile=%d items>1/warp=%d "
              "n-chunks>1=%d convert 8/4/2/1=%d/%d/%d/%d\n",
              k.skw_dense, k.skw_scalar, k.skw_mask, k.skw_cat, k.skw_tail, k.skw_multi, k.skw_slots, k.skw_chunks,
              k.skw_ch8, k.skw_ch4, k.skw_ch2, k.skw_ch1);
  if (!k.skw_dense || !k.skw_scalar || !k.skw_mask || !k.skw_cat || !k.skw_tail || !k.skw_multi || !k.skw_slots ||
      !k.skw_chunks ||
      !k.skw_ch8 || !k.skw_ch4 || !k.skw_ch2 || !k.skw_ch1) {
    std::printf("FAIL: a small-K weight-grad path was never exercised\n");
    ++g_failures;
  }
  if (!k.sk_dense || !k.sk_scalar || !k.sk_slab || !k.sk_scatter || !k.sk_rc4 || !k.sk_rc8 || !k.sk_mma || !k.sk_linear || !k.sk_padrows || !k.sk_p128 ||
      !k.sk_p64 || !k.sk_p32 || !k.sk_p16 || !k.sk_multi || !k.sk_tail || !k.skd_mma || !k.skd_fma ||
      !k.skd_mask_dense || !k.skd_mask_scalar || !k.skd_cat || !k.skd_slab || !k.skd_ch8 || !k.skd_ch4 ||
      !k.skd_ch2 || !k.skd_ch1) {
    std::printf("FAIL: a small-K path was never exercised\n");
    ++g_failures;
  }
  std::printf("vector paths: fwd=%d shuffle_pixel=%d shuffle_channel=%d shuffle_fill_tiled=%d shuffle_fill_vec=%d "
              "(groups 2: %d, 8-byte vectors: %d, one-access halves: %d)\n",
              g_paths.fwd_vec, g_paths.shuffle_vec_pixel, g_paths.shuffle_vec_channel, g_paths.shuffle_fill_tiled,
              g_paths.shuffle_fill_vec, g_paths.shuffle_fill_vec_g2, g_paths.shuffle_fill_half_vec,
              g_paths.shuffle_fill_half_run);
  if (!g_paths.fwd_vec || !g_paths.shuffle_vec_pixel || !g_paths.shuffle_vec_channel || !g_paths.shuffle_fill_tiled ||
      !g_paths.shuffle_fill_vec || !g_paths.shuffle_fill_vec_g2 || g_paths.shuffle_fill_vec_g2 == g_paths.shuffle_fill_vec ||
      !g_paths.shuffle_fill_half_vec || !g_paths.shuffle_fill_half_run ||
      g_paths.shuffle_fill_half_run == g_paths.shuffle_fill_vec_g2) {
    std::printf("FAIL: a vector path was never exercised\n");
    ++g_failures;
  }
  std::printf(g_failures ? "emulate_group_pointwise_conv2d: %d FAILURES in %d runs\n"
                         : "emulate_group_pointwise_conv2d: all %d runs passed\n",
              g_failures ? g_failures : g_runs, g_runs);
  return g_failures ? 1 : 0;
}
