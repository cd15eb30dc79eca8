// Host-side replay of the conv2d implicit-GEMM blocks, thread by thread, phase by phase, against a
// direct (scatter-form) double-precision reference. Runs on a machine without a GPU: it exercises
// every index computation, gather mask, shared-memory layout and epilogue mapping of the device
// kernels. The tensor-core MMA itself is replaced by SimtMath (same smem contract).
//
// Build/run: cmake target `cnnkern_emulate` (ctest). Compiled with AddressSanitizer there, so any
// out-of-bounds gather or store in the policies aborts.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "check/block_replay.cuh"
#include "check/emulate_tensor.cuh"
#include "conv/conv2d.cuh"

using namespace cnnkern;
using emulate::kNCHW;
using emulate::kNCHWView;
using emulate::kNHWC;
using emulate::Tensor4;

namespace {

int g_failures = 0;

#define EXPECT(cond, ...)                                    \
  do {                                                       \
    if (!(cond)) {                                           \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);       \
      std::printf(__VA_ARGS__);                              \
      std::printf("\n");                                     \
      ++g_failures;                                          \
    }                                                        \
  } while (0)

struct Case {
  int n, cin, h, w, cout, kh, kw, groups, sh, sw, ph, pw, dh, dw;
  int extra_h, extra_w;  // implicit bottom/right padding beyond the top/left one
  const char* name;
  int oh() const { return (h + 2 * ph + extra_h - dh * (kh - 1) - 1) / sh + 1; }
  int ow() const { return (w + 2 * pw + extra_w - dw * (kw - 1) - 1) / sw + 1; }
  Conv2dShape shape() const {
    return Conv2dShape{n,      cin,    h,  w,  cout, oh(), ow(), kh, kw, groups, cin / groups,
                       cout / groups, sh, sw, ph, pw,   dh,   dw};
  }
};

template <class T>
float tol() {
  return sizeof(T) == 4 ? 2e-5f : (std::is_same<T, __half>::value ? 4e-3f : 2e-2f);
}

template <class T>
bool close(double ref, float got, double scale) {
  return std::fabs(ref - got) <= tol<T>() * (std::fabs(ref) + scale);
}

// Reference in scatter form: iterate the forward definition and accumulate in double.
template <class T, class F>
void for_each_term(const Case& c, F f) {
  const int cgi = c.cin / c.groups, cgo = c.cout / c.groups;
  for (int n = 0; n < c.n; ++n)
    for (int o = 0; o < c.cout; ++o)
      for (int p = 0; p < c.oh(); ++p)
        for (int q = 0; q < c.ow(); ++q)
          for (int ci = 0; ci < cgi; ++ci)
            for (int r = 0; r < c.kh; ++r)
              for (int s = 0; s < c.kw; ++s) {
                const int ih = p * c.sh - c.ph + r * c.dh, iw = q * c.sw - c.pw + s * c.dw;
                if (ih < 0 || ih >= c.h || iw < 0 || iw >= c.w) continue;
                f(n, o, p, q, (o / cgo) * cgi + ci, ci, r, s, ih, iw);
              }
}

// The filter is never a sliced view; it takes the activations' layout otherwise.
int weight_layout(int layout) { return layout == kNCHWView ? kNCHW : layout; }

template <class T>
int vec_width() {
  return 16 / static_cast<int>(sizeof(T));
}

// The 16-byte channels-last forward as launched (csrc/cuda/conv2d_launch.cuh): the tile configuration of
// conv2d_fwd_tile_plan for an H200 (132 SMs), or (variant 3, 16-bit) GemmTileBig forced, so that its
// replay covers the small odd cases too.
constexpr int kPlanSms = 132, kPlanSmemPerSm = 228 * 1024;
template <class T, EpiKind E>
void replay_fwd_vec(const Conv2dFwdParams<T>& prm, bool m_fast, bool force_big) {
  using P = Conv2dFwdProblem<T, Fast::kK, 16 / static_cast<int>(sizeof(T)), E>;
  if constexpr (sizeof(T) == 2 && E != EpiKind::kStats) {
    if (force_big || conv2d_fwd_tile_plan(prm.s, sizeof(T), true, E, kPlanSms, kPlanSmemPerSm) == FwdTile::kBig) {
      replay<P, GemmTileBig<T>>(P::make(prm, m_fast));
      return;
    }
  }
  replay(P::make(prm, m_fast));
}

template <class T>
void run_fwd(const Case& c, int layout, int variant, bool with_bias, std::mt19937& rng) {
  Tensor4<T> x(c.n, c.cin, c.h, c.w, layout), w(c.cout, c.cin / c.groups, c.kh, c.kw, weight_layout(layout)),
      y(c.n, c.cout, c.oh(), c.ow(), layout);
  x.fill_random(rng);
  w.fill_random(rng);
  std::vector<T> bias(c.cout);
  for (auto& b : bias) b = Num<T>::from_float(std::uniform_real_distribution<float>(-1, 1)(rng));
  y.fill_nan();

  Conv2dFwdParams<T> prm{c.shape(), x.ptr, x.st, w.ptr, w.st, with_bias ? bias.data() : nullptr, 1, y.ptr, y.st};
  const bool m_fast = layout != kNHWC;
  if (variant == 0) replay(Conv2dFwdProblem<T, Fast::kRow, 1>::make(prm, m_fast));
  if (variant == 1) replay(Conv2dFwdProblem<T, Fast::kK, 1>::make(prm, m_fast));
  if (variant >= 2) replay_fwd_vec<T, EpiKind::kPlain>(prm, m_fast, variant == 3);

  std::vector<double> ref(y.numel(), 0.0);
  auto yi = [&](int n, int o, int p, int q) { return ((int64_t(n) * c.cout + o) * c.oh() + p) * c.ow() + q; };
  for_each_term<T>(c, [&](int n, int o, int p, int q, int cin, int ci, int r, int s, int ih, int iw) {
    ref[yi(n, o, p, q)] += double(x.get(n, cin, ih, iw)) * w.get(o, ci, r, s);
  });
  int bad = 0;
  y.each([&](int n, int o, int p, int q) {
    const double rv = ref[yi(n, o, p, q)] + (with_bias ? Num<T>::to_float(bias[o]) : 0.0);
    const float got = y.get(n, o, p, q);
    if (!close<T>(rv, got, 1.0) && bad++ < 5)
      std::printf("  fwd %s layout=%d var=%d y[%d,%d,%d,%d]=%g ref=%g\n", c.name, layout, variant, n, o, p, q, got, rv);
  });
  EXPECT(bad == 0, "fwd %s layout=%d variant=%d bias=%d: %d mismatches", c.name, layout, variant, with_bias, bad);
}

// ---- forward epilogues (common/epilogue.cuh) ------------------------------------------------------------

double act_ref(int a, double z) {
  switch (a) {
    case kActRelu: return z < 0 ? 0.0 : z;
    case kActRelu6: return z < 0 ? 0.0 : (z > 6 ? 6.0 : z);
    case kActSilu: return z / (1.0 + std::exp(-z));
    default: return z;
  }
}

template <class T, EpiKind E>
void replay_fwd(const Conv2dFwdParams<T>& prm, bool m_fast, int variant) {
  if (variant == 0) replay(Conv2dFwdProblem<T, Fast::kRow, 1, E>::make(prm, m_fast));
  if (variant == 1) replay(Conv2dFwdProblem<T, Fast::kK, 1, E>::make(prm, m_fast));
  if (variant >= 2) replay_fwd_vec<T, E>(prm, m_fast, variant == 3);
}

// A per-channel vector of the act epilogue, in fp32 or T, read through a stride of 3.
template <class T>
struct EpiVec {
  bool on, f32;
  std::vector<float> f;
  std::vector<T> h;
  EpiVec(bool on_, bool f32_, int c, float lo, float hi, std::mt19937& rng) : on(on_), f32(f32_) {
    std::uniform_real_distribution<float> u(lo, hi);
    f.assign(size_t(c) * 3, 1e30f);
    h.assign(size_t(c) * 3, Num<T>::from_float(1e30f));
    for (int i = 0; i < c; ++i) {
      const float v = u(rng);
      f[size_t(i) * 3] = f32 ? v : Num<T>::to_float(Num<T>::from_float(v));
      h[size_t(i) * 3] = Num<T>::from_float(v);
    }
  }
  ChannelVec view() const {
    if (!on) return ChannelVec{};
    return ChannelVec{f32 ? static_cast<const void*>(f.data()) : static_cast<const void*>(h.data()), 3, f32};
  }
  double at(int c) const { return f[size_t(c) * 3]; }
};

// act((conv + bias) * scale + shift), each of bias/scale/shift optional (`vecs` bits 0..2), the vectors in
// fp32 (bit 3) or T.
template <class T>
void run_fwd_act(const Case& c, int layout, int variant, int act, int vecs, std::mt19937& rng) {
  Tensor4<T> x(c.n, c.cin, c.h, c.w, layout), w(c.cout, c.cin / c.groups, c.kh, c.kw, weight_layout(layout)),
      y(c.n, c.cout, c.oh(), c.ow(), layout);
  x.fill_random(rng);
  w.fill_random(rng);
  y.fill_nan();
  const bool with_bias = vecs & 1, f32 = (vecs & 8) != 0;
  std::vector<T> bias(c.cout);
  for (auto& b : bias) b = Num<T>::from_float(std::uniform_real_distribution<float>(-1, 1)(rng));
  const EpiVec<T> scale(vecs & 2, f32, c.cout, 0.25f, 2.0f, rng), shift(vecs & 4, f32, c.cout, -1.0f, 4.0f, rng);
  Conv2dFwdParams<T> prm{c.shape(), x.ptr, x.st, w.ptr, w.st, with_bias ? bias.data() : nullptr, 1, y.ptr, y.st};
  prm.aff = ChannelAffine{scale.view(), shift.view(), act};
  replay_fwd<T, EpiKind::kAct>(prm, layout != kNHWC, variant);

  std::vector<double> ref(y.numel(), 0.0), mag(y.numel(), 0.0);
  auto yi = [&](int n, int o, int p, int q) { return ((int64_t(n) * c.cout + o) * c.oh() + p) * c.ow() + q; };
  for_each_term<T>(c, [&](int n, int o, int p, int q, int cin, int ci, int r, int s, int ih, int iw) {
    const double t = double(x.get(n, cin, ih, iw)) * w.get(o, ci, r, s);
    ref[yi(n, o, p, q)] += t;
    mag[yi(n, o, p, q)] += std::fabs(t);
  });
  int bad = 0;
  y.each([&](int n, int o, int p, int q) {
    double z = ref[yi(n, o, p, q)] + (with_bias ? Num<T>::to_float(bias[o]) : 0.0);
    double m = mag[yi(n, o, p, q)] + 1.0;
    if (scale.on) {
      z *= scale.at(o);
      m *= scale.at(o);
    }
    if (shift.on) {
      z += shift.at(o);
      m += std::fabs(shift.at(o));
    }
    const double rv = act_ref(act, z);
    const float got = y.get(n, o, p, q);
    if (!(std::isfinite(got) && close<T>(rv, got, m)) && bad++ < 5)
      std::printf("  fwd_act %s layout=%d var=%d act=%d y[%d,%d,%d,%d]=%g ref=%g\n", c.name, layout, variant, act, n,
                  o, p, q, got, rv);
  });
  EXPECT(bad == 0, "fwd_act %s layout=%d variant=%d act=%d vecs=%d: %d mismatches", c.name, layout, variant, act,
         vecs, bad);
}

// The plain forward and its per-pixel-tile statistics. Every partial is checked against the double
// statistics of the stored values of its tile (pixels [t * kBM, (t + 1) * kBM) of (n, oh, ow)), and the
// combined ones against the whole output. `offset` is added to the bias: outputs 1e4 +- 1 in fp32 keep
// their variance only with the two-pass tile statistics.
template <class T>
void run_fwd_stats(const Case& c, int layout, int variant, float offset, std::mt19937& rng) {
  Tensor4<T> x(c.n, c.cin, c.h, c.w, layout), w(c.cout, c.cin / c.groups, c.kh, c.kw, weight_layout(layout)),
      y(c.n, c.cout, c.oh(), c.ow(), layout);
  x.fill_random(rng);
  w.fill_random(rng);
  y.fill_nan();
  std::vector<T> bias(c.cout);
  for (auto& b : bias) b = Num<T>::from_float(offset + std::uniform_real_distribution<float>(-1, 1)(rng));
  constexpr int kBM = GemmTile<T>::kBM;
  const int m_total = c.n * c.oh() * c.ow();
  const int tiles = (m_total + kBM - 1) / kBM;
  std::vector<float> part(size_t(tiles) * c.cout * 3, NAN);
  Conv2dFwdParams<T> prm{c.shape(), x.ptr, x.st, w.ptr, w.st, bias.data(), 1, y.ptr, y.st};
  prm.stats = StatsOut{part.data(), c.cout};
  replay_fwd<T, EpiKind::kStats>(prm, layout != kNHWC, variant);

  // The output itself, as the plain forward.
  std::vector<double> ref(y.numel(), 0.0);
  auto yi = [&](int n, int o, int p, int q) { return ((int64_t(n) * c.cout + o) * c.oh() + p) * c.ow() + q; };
  for_each_term<T>(c, [&](int n, int o, int p, int q, int cin, int ci, int r, int s, int ih, int iw) {
    ref[yi(n, o, p, q)] += double(x.get(n, cin, ih, iw)) * w.get(o, ci, r, s);
  });
  int bad = 0;
  y.each([&](int n, int o, int p, int q) {
    const double rv = ref[yi(n, o, p, q)] + Num<T>::to_float(bias[o]);
    const float got = y.get(n, o, p, q);
    if (!close<T>(rv, got, 1.0 + std::fabs(offset)) && bad++ < 5)
      std::printf("  fwd_stats %s y[%d,%d,%d,%d]=%g ref=%g\n", c.name, n, o, p, q, got, rv);
  });
  // The partials against the stored values.
  for (int t = 0; t < tiles; ++t)
    for (int o = 0; o < c.cout; ++o) {
      const int m0 = t * kBM, m1 = std::min(m_total, m0 + kBM);
      double sum = 0.0, vmax = 0.0;
      for (int m = m0; m < m1; ++m) {
        const int q = m % c.ow(), p = (m / c.ow()) % c.oh(), n = m / (c.ow() * c.oh());
        sum += y.get(n, o, p, q);
        vmax = std::max(vmax, std::fabs(double(y.get(n, o, p, q))));
      }
      const double mean = sum / (m1 - m0);
      double m2 = 0.0;
      for (int m = m0; m < m1; ++m) {
        const int q = m % c.ow(), p = (m / c.ow()) % c.oh(), n = m / (c.ow() * c.oh());
        const double d = y.get(n, o, p, q) - mean;
        m2 += d * d;
      }
      const float* g = &part[(size_t(t) * c.cout + o) * 3];
      const bool ok = g[0] == float(m1 - m0) && std::fabs(g[1] - mean) <= 1e-6 * vmax + 1e-7 &&
                      std::fabs(g[2] - m2) <= 1e-4 * m2 + 1e-9 * (m1 - m0) * vmax * vmax;
      if (!ok && bad++ < 5)
        std::printf("  fwd_stats %s layout=%d var=%d tile %d ch %d: (%g, %g, %g) ref (%d, %g, %g)\n", c.name, layout,
                    variant, t, o, g[0], g[1], g[2], m1 - m0, mean, m2);
    }
  EXPECT(bad == 0, "fwd_stats %s layout=%d variant=%d offset=%g: %d mismatches", c.name, layout, variant, offset, bad);
}

// Also the transposed conv forward (dy = its input, dx = its output); the bias, when present, is read
// through a stride of 2 like a sliced view.
template <class T>
void run_dgrad(const Case& c, int layout, int variant, std::mt19937& rng, bool with_bias = false) {
  Tensor4<T> dy(c.n, c.cout, c.oh(), c.ow(), layout), w(c.cout, c.cin / c.groups, c.kh, c.kw, weight_layout(layout)),
      dx(c.n, c.cin, c.h, c.w, layout);
  dy.fill_random(rng);
  w.fill_random(rng);
  std::vector<T> bias(2 * c.cin);
  for (auto& b : bias) b = Num<T>::from_float(std::uniform_real_distribution<float>(-1, 1)(rng));
  dx.fill_nan();
  Conv2dDgradParams<T> prm{c.shape(), dy.ptr, dy.st, w.ptr, w.st, dx.ptr, dx.st,
                           with_bias ? bias.data() : nullptr, 2};
  const bool m_fast = layout != kNHWC;
  if (variant == 0) replay(Conv2dDgradProblem<T, Fast::kRow, 1>::make(prm, m_fast));
  if (variant == 1) replay(Conv2dDgradProblem<T, Fast::kK, 1>::make(prm, m_fast));
  if (variant == 2) {
    if constexpr (sizeof(T) == 4) replay(Conv2dDgradProblem<T, Fast::kK, 4>::make(prm, m_fast));
    else replay(Conv2dDgradProblem<T, Fast::kK, 8>::make(prm, m_fast));
  }
  std::vector<double> ref(dx.numel(), 0.0);
  auto xi = [&](int n, int ch, int h, int w_) { return ((int64_t(n) * c.cin + ch) * c.h + h) * c.w + w_; };
  for_each_term<T>(c, [&](int n, int o, int p, int q, int cin, int ci, int r, int s, int ih, int iw) {
    ref[xi(n, cin, ih, iw)] += double(dy.get(n, o, p, q)) * w.get(o, ci, r, s);
  });
  int bad = 0;
  dx.each([&](int n, int ch, int h, int w_) {
    const double rv = ref[xi(n, ch, h, w_)] + (with_bias ? Num<T>::to_float(bias[2 * ch]) : 0.0);
    const float got = dx.get(n, ch, h, w_);
    if (!close<T>(rv, got, 1.0) && bad++ < 5)
      std::printf("  dgrad %s layout=%d var=%d dx[%d,%d,%d,%d]=%g ref=%g\n", c.name, layout, variant, n, ch, h, w_, got, rv);
  });
  EXPECT(bad == 0, "dgrad %s layout=%d variant=%d bias=%d: %d mismatches", c.name, layout, variant, with_bias, bad);
}

// The phase tap lists against brute force: every tap that reaches a phase is listed, once, and only those.
void test_phase_taps() {
  int bad = 0;
  for (int stride = 1; stride <= 6; ++stride)
    for (int dil = 1; dil <= 6; ++dil)
      for (int k = 1; k <= 7; ++k)
        for (int pad = 0; pad <= 9; ++pad) {
          const int step = stride / Conv2dDgradProblem<float, Fast::kRow, 1>::gcd(stride, dil);
          const DgradAxis ax{k, stride, pad, dil, step, step * dil / stride, 1};
          for (int phase = 0; phase < stride; ++phase) {
            const PhaseTaps t = phase_taps(ax, phase);
            std::vector<int> want, got;
            for (int r = 0; r < k; ++r)
              if ((phase + pad - r * dil) % stride == 0) want.push_back(r);
            for (int j = 0; j < t.count; ++j) got.push_back(t.first + j * step);
            bool ok = want == got;
            for (int j = 0; ok && j < t.count; ++j) {
              const int r = t.first + j * step;
              for (int i = 0; i < 4; ++i)  // dy coordinate of dx pixel phase + stride*i through tap r
                ok = ok && (phase + stride * i + pad - r * dil) == stride * (i + t.shift - j * ax.dil_step);
            }
            if (!ok && bad++ < 5)
              std::printf("FAIL phase_taps stride=%d dil=%d k=%d pad=%d phase=%d: first=%d count=%d\n", stride, dil,
                          k, pad, phase, t.first, t.count);
          }
        }
  g_failures += bad;
}

template <class T>
void run_wgrad(const Case& c, int layout, int variant, int splits_req, std::mt19937& rng) {
  Tensor4<T> dy(c.n, c.cout, c.oh(), c.ow(), layout), x(c.n, c.cin, c.h, c.w, layout),
      dw(c.cout, c.cin / c.groups, c.kh, c.kw, weight_layout(layout));
  dy.fill_random(rng);
  x.fill_random(rng);
  dw.fill_nan();
  const int bk = GemmTile<T>::kBK;
  const int kgemm = c.n * c.oh() * c.ow();
  const int ktiles = (kgemm + bk - 1) / bk;
  const int tps = (ktiles + splits_req - 1) / splits_req;
  const int splits = (ktiles + tps - 1) / tps;
  const int row = c.kh * c.kw * (c.cin / c.groups);
  std::vector<float> ws(size_t(splits) * c.cout * row, NAN);
  Conv2dWgradParams<T> prm{c.shape(), dy.ptr, dy.st, x.ptr, x.st, ws.data(), splits, tps * bk, dw.ptr, dw.st};
  if (variant == 0) replay(Conv2dWgradProblem<T, Fast::kK>::make(prm));
  if (variant == 1) replay(Conv2dWgradProblem<T, Fast::kRow>::make(prm));
  int unwritten = 0;
  for (float v : ws) unwritten += std::isnan(v) ? 1 : 0;
  EXPECT(unwritten == 0, "wgrad %s: %d workspace elements unwritten", c.name, unwritten);
  replay_reduce(Conv2dWgradReduce<T>::make(prm));

  std::vector<double> ref(dw.numel(), 0.0);
  const int cgi = c.cin / c.groups;
  auto wi = [&](int o, int ci, int r, int s) { return ((int64_t(o) * cgi + ci) * c.kh + r) * c.kw + s; };
  for_each_term<T>(c, [&](int n, int o, int p, int q, int cin, int ci, int r, int s, int ih, int iw) {
    ref[wi(o, ci, r, s)] += double(dy.get(n, o, p, q)) * x.get(n, cin, ih, iw);
  });
  int bad = 0;
  const double scale = std::sqrt(double(kgemm));
  dw.each([&](int o, int ci, int r, int s) {
    const double rv = ref[wi(o, ci, r, s)];
    const float got = dw.get(o, ci, r, s);
    if (!close<T>(rv, got, scale) && bad++ < 5)
      std::printf("  wgrad %s layout=%d var=%d split=%d dw[%d,%d,%d,%d]=%g ref=%g\n", c.name, layout, variant, splits, o,
                  ci, r, s, got, rv);
  });
  EXPECT(bad == 0, "wgrad %s layout=%d variant=%d splits=%d: %d mismatches", c.name, layout, variant, splits, bad);
}

void test_fastdiv() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> any_n(0, 0x7fffffffu);
  auto check = [&](uint32_t d, uint32_t n) {
    const FastDivmod f(d);
    uint32_t q, r;
    f.divmod(n, q, r);
    if (q != n / d || r != n % d) {
      if (g_failures++ < 10) std::printf("FAIL fastdiv %u / %u: got %u rem %u\n", n, d, q, r);
    }
  };
  const uint32_t edges[] = {0u, 1u, 2u, 3u, 0x3fffffffu, 0x40000000u, 0x7ffffffeu, 0x7fffffffu};
  for (uint32_t d = 1; d < 5000; ++d) {
    for (uint32_t n : edges) check(d, n);
    for (int i = 0; i < 200; ++i) check(d, any_n(rng));
    for (uint32_t k = 1; k < 4; ++k) {
      const uint64_t mult = uint64_t(0x7fffffffu / d) - k;
      check(d, static_cast<uint32_t>(mult * d));
      check(d, static_cast<uint32_t>(mult * d - 1));
      check(d, static_cast<uint32_t>(mult * d + d - 1));
    }
  }
  for (int i = 0; i < 200000; ++i) check(any_n(rng) | 1u, any_n(rng));
  for (int sh = 0; sh < 31; ++sh)
    for (int i = 0; i < 1000; ++i) {
      const uint32_t d = (1u << sh) + static_cast<uint32_t>(i % 3) - 1;
      if (d > 0) check(d, any_n(rng));
    }
}

// Every activation and every combination of bias/scale/shift (fp32 or T vectors) meets each gather
// variant and layout over the cases; the statistics run on every variant and layout.
template <class T>
void run_epilogues(const Case& c, std::mt19937& rng) {
  static int rot = 0;
  const int v = vec_width<T>();
  for (int layout = kNCHW; layout <= kNCHWView; ++layout) {
    for (int variant = 0; variant < 4; ++variant) {
      if (variant >= 2 && !(layout == kNHWC && (c.cin / c.groups) % v == 0)) continue;
      if (variant == 3 && sizeof(T) == 4) continue;  // GemmTileBig: 16-bit, no statistics epilogue
      for (int act = 0; act < kActCount; ++act) run_fwd_act<T>(c, layout, variant, act, rot++ % 16, rng);
      if (variant < 3) run_fwd_stats<T>(c, layout, variant, 0.0f, rng);
    }
  }
}

template <class T>
void run_all(const std::vector<Case>& cases) {
  std::mt19937 rng(1234);
  const int v = vec_width<T>();
  for (const Case& c : cases) {
    const bool vec_fwd = (c.cin / c.groups) % v == 0;
    const bool vec_dgrad = (c.cout / c.groups) % v == 0;
    for (int layout = kNCHW; layout <= kNCHWView; ++layout) {
      for (int variant = 0; variant < 2; ++variant) {
        run_fwd<T>(c, layout, variant, variant == 0, rng);
        run_dgrad<T>(c, layout, variant, rng);
        run_wgrad<T>(c, layout, variant, 1 + 3 * variant, rng);
      }
      if (layout == kNHWC && vec_fwd) run_fwd<T>(c, layout, 2, true, rng);
      if (sizeof(T) == 2 && layout == kNHWC && vec_fwd) run_fwd<T>(c, layout, 3, true, rng);
      if (layout == kNHWC && vec_dgrad) run_dgrad<T>(c, layout, 2, rng);
    }
    run_epilogues<T>(c, rng);
    run_wgrad<T>(c, 0, 0, 1000000, rng);  // one K tile per split
  }
}

// Stride-phase coverage of the input gradient / transposed conv forward, with and without bias.
template <class T>
void run_phases(const std::vector<Case>& cases) {
  std::mt19937 rng(4321);
  const int v = vec_width<T>();
  for (const Case& c : cases) {
    for (int layout = kNCHW; layout <= kNCHWView; ++layout) {
      for (int variant = 0; variant < 2; ++variant) {
        run_dgrad<T>(c, layout, variant, rng, false);
        run_dgrad<T>(c, layout, variant, rng, true);
      }
      if (layout == kNHWC && (c.cout / c.groups) % v == 0) run_dgrad<T>(c, layout, 2, rng, true);
    }
  }
}

}  // namespace

int main() {
  test_fastdiv();
  std::printf("fastdiv: %s\n", g_failures ? "FAILED" : "ok");
  // n cin h w cout kh kw groups sh sw ph pw dh dw extra_h extra_w
  const std::vector<Case> cases = {
      {2, 6, 9, 7, 10, 3, 3, 2, 2, 2, 1, 1, 1, 1, 0, 0, "k3s2p1g2"},
      {1, 5, 8, 8, 7, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, "same_even_k4"},
      {2, 4, 11, 6, 5, 3, 2, 1, 1, 2, 2, 0, 2, 3, 1, 0, "dilated_asym"},
      {1, 16, 6, 5, 24, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, "pointwise_vec"},
      {2, 16, 7, 7, 16, 3, 3, 2, 1, 1, 1, 1, 1, 1, 0, 0, "vec_g2"},
      {1, 8, 9, 9, 8, 3, 3, 8, 2, 2, 1, 1, 1, 1, 0, 0, "depthwise_s2"},
      {3, 3, 20, 19, 130, 5, 5, 1, 3, 2, 2, 2, 1, 1, 0, 0, "first_layer_wideN"},
      {1, 2, 3, 3, 3, 3, 3, 1, 1, 1, 4, 4, 1, 1, 0, 0, "pad_bigger_than_input"},
      {9, 8, 16, 16, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, "M_over_tiles"},
      {2, 136, 3, 3, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, "K_many_tiles"},
      {1, 4, 7, 6, 6, 3, 3, 1, 2, 1, 0, 2, 1, 1, 3, 1, "explicit_4_sided_pad"},
      {1, 16, 5, 7, 136, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, "vec_two_128_wide_n_tiles"},
  };
  // The forward's tile plan on the ResNet-50 3x3 layers (N=256, stride 1, 132 SMs): GemmTileBig for
  // 128@28 and 256@14 only (64 channels fill half a 128-wide tile; 512@7 fills 74% of its last wave);
  // never for fp32, scalar gathers or the statistics epilogue.
  {
    auto r50 = [](int ch, int hw) { return Conv2dShape{256, ch, hw, hw, ch, hw, hw, 3, 3, 1, ch, ch, 1, 1, 1, 1, 1, 1}; };
    auto big = [](const Conv2dShape& s, int bytes, bool vec, EpiKind e, int smem = kPlanSmemPerSm) {
      return conv2d_fwd_tile_plan(s, bytes, vec, e, kPlanSms, smem) == FwdTile::kBig;
    };
    EXPECT(!big(r50(64, 56), 2, true, EpiKind::kPlain), "plan 64@56");
    EXPECT(big(r50(128, 28), 2, true, EpiKind::kPlain), "plan 128@28");
    EXPECT(big(r50(256, 14), 2, true, EpiKind::kAct), "plan 256@14");
    EXPECT(!big(r50(512, 7), 2, true, EpiKind::kPlain), "plan 512@7");
    EXPECT(!big(r50(256, 14), 4, true, EpiKind::kPlain), "plan fp32");
    EXPECT(!big(r50(256, 14), 2, false, EpiKind::kPlain), "plan scalar gathers");
    EXPECT(!big(r50(256, 14), 2, true, EpiKind::kStats), "plan stats");
    EXPECT(!big(r50(256, 14), 2, true, EpiKind::kPlain, 164 * 1024), "plan sm_80 smem (2 x 97 KiB > 164 KiB)");
    EXPECT(!big(r50(256, 14), 2, true, EpiKind::kPlain, 100 * 1024), "plan sm_86 smem");
    std::printf("fwd tile plan: %s\n", g_failures ? "FAILED" : "ok");
  }
  run_all<float>(cases);
  std::printf("float: %s\n", g_failures ? "FAILED" : "ok");
  run_all<__half>(cases);
  std::printf("half: %s\n", g_failures ? "FAILED" : "ok");
  run_all<__nv_bfloat16>(cases);
  std::printf("bf16: %s\n", g_failures ? "FAILED" : "ok");

  test_phase_taps();
  std::printf("phase taps: %s\n", g_failures ? "FAILED" : "ok");
  // As transposed convs: dy (cout channels, oh x ow) is the input, dx (cin, h x w) the output.
  // n cin h w cout kh kw groups sh sw ph pw dh dw extra_h extra_w
  const std::vector<Case> phase_cases = {
      {2, 6, 16, 14, 8, 4, 4, 1, 2, 2, 1, 1, 1, 1, 0, 0, "dcgan_k4s2p1"},
      {1, 4, 10, 8, 5, 1, 1, 1, 3, 2, 0, 0, 1, 1, 0, 0, "k1s3x2_empty_phases"},
      {2, 6, 13, 11, 4, 5, 3, 2, 3, 2, 2, 1, 2, 3, 1, 0, "k5x3_s3x2_d2x3_g2"},
      {1, 3, 9, 9, 4, 3, 3, 1, 2, 2, 1, 0, 2, 2, 0, 0, "s2d2_one_phase_all_taps"},
      {1, 4, 11, 7, 3, 2, 2, 1, 3, 1, 0, 1, 1, 1, 2, 0, "k2_s3x1"},
      {1, 3, 12, 10, 4, 3, 3, 1, 2, 2, 0, 0, 3, 3, -2, -3, "rows_past_reach"},
      {2, 8, 9, 10, 16, 4, 4, 2, 2, 3, 1, 2, 1, 1, 0, 0, "vec_g2_s2x3"},
      {1, 4, 7, 7, 4, 3, 3, 4, 2, 2, 1, 1, 1, 1, 1, 1, "depthwise_s2"},
      {1, 2, 2, 3, 3, 3, 3, 1, 3, 3, 2, 2, 1, 1, 0, 0, "extent_below_stride"},
  };
  run_phases<float>(phase_cases);
  std::printf("phases float: %s\n", g_failures ? "FAILED" : "ok");
  run_phases<__half>(phase_cases);
  std::printf("phases half: %s\n", g_failures ? "FAILED" : "ok");
  run_phases<__nv_bfloat16>(phase_cases);
  std::printf("phases bf16: %s\n", g_failures ? "FAILED" : "ok");

  // Statistics of outputs far above their spread (1e4 +- 1, fp32): several pixel tiles, every variant.
  {
    std::mt19937 rng(99);
    const Case c{3, 8, 11, 13, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, "mean_1e4"};
    for (int layout = kNCHW; layout <= kNCHWView; ++layout)
      for (int variant = 0; variant < 3; ++variant)
        if (variant < 2 || layout == kNHWC) run_fwd_stats<float>(c, layout, variant, 1e4f, rng);
    std::printf("stats mean 1e4: %s\n", g_failures ? "FAILED" : "ok");
  }
  std::printf(g_failures ? "emulate_conv2d: %d FAILURES\n" : "emulate_conv2d: all passed\n", g_failures);
  return g_failures ? 1 : 0;
}
