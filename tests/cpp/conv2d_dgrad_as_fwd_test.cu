// CPU test of dgrad_as_fwd (csrc/cuda/conv2d_dgrad_as_fwd.h), the plan that sends a stride-1 conv2d input
// gradient to the sm_90a forward kernel. For random small problems (odd sizes, kernel / padding / dilation
// different in h and w, bottom/right padding from 0 to dilation * (kernel - 1) + 2) it checks that the plan
// applies, that the planned forward has non-negative top padding and output extent exactly H x W, and that a naive forward over the planned shape with w'[c][k][r][s] = w[k][c][R-1-r][S-1-s]
// (what csrc/cuda/conv2d.cpp's dgrad_weight_as_fwd builds) equals a naive dgrad, in double. Then each refusal:
// fp32, groups, stride, 32-bit coordinates (padding past dilation * (kernel - 1) applies since 2026-12-02:
// the forward starts that many grad_out rows in).
// Then dgrad_phases_as_fwd, the strided generalization: for random problems with stride 1-3 (and the same
// kernel / padding / dilation ranges) the phases cover grad_in exactly once, each planned forward is legal and
// its output extent is the phase's, and the phases' naive forwards with w'_phase (the tap slice of w, flipped
// and transposed, as dgrad_phase_weight_as_fwd builds it) assembled into grad_in equal a naive dgrad, in
// double; ResNet-50's strided layers and DCGAN's transposed convs apply with the expected phases.
// Build/run: cmake target `cnnkern_test_dgrad_as_fwd` (ctest), no GPU, no torch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/conv2d_dgrad_as_fwd.h"

namespace {

using cnnkern::Conv2dShape;
using cnnkern::DgradAsFwd;
using cnnkern::dgrad_as_fwd;
using cnnkern::DgradPhase;
using cnnkern::DgradPhasesAsFwd;
using cnnkern::dgrad_phases_as_fwd;

int g_failures = 0;

void fail(const char* what, const Conv2dShape& s) {
  ++g_failures;
  std::fprintf(stderr,
               "FAIL %s: n=%d c_in=%d h=%d w=%d c_out=%d oh=%d ow=%d k=%dx%d pad=%d,%d dil=%d,%d stride=%d,%d g=%d\n",
               what, s.n, s.c_in, s.h, s.w, s.c_out, s.oh, s.ow, s.kh, s.kw, s.pad_h, s.pad_w, s.dil_h, s.dil_w,
               s.stride_h, s.stride_w, s.groups);
}

// Output extent for top padding pad and bottom padding pad_hi (host_common.h's out_extent).
long long out_extent(long long in, long long pad, long long pad_hi, long long k, long long stride, long long dil) {
  const long long span = in + pad + pad_hi - dil * (k - 1) - 1;
  return span < 0 ? -1 : span / stride + 1;
}

// y[n][k][oh][ow] = sum x[n][c][oh*sh - ph + dh*r][ow*sw - pw + dw*q] * w[k][c][r][q]; x outside [0,H)x[0,W)
// reads as zero, which is how the kernels treat the implicit bottom/right padding. NCHW contiguous, groups 1.
std::vector<double> forward(const Conv2dShape& s, const std::vector<double>& x, const std::vector<double>& w) {
  std::vector<double> y(size_t(s.n) * s.c_out * s.oh * s.ow, 0.0);
  for (int n = 0; n < s.n; ++n)
    for (int k = 0; k < s.c_out; ++k)
      for (int oh = 0; oh < s.oh; ++oh)
        for (int ow = 0; ow < s.ow; ++ow) {
          double acc = 0;
          for (int c = 0; c < s.c_in; ++c)
            for (int r = 0; r < s.kh; ++r)
              for (int q = 0; q < s.kw; ++q) {
                const int ih = oh * s.stride_h - s.pad_h + s.dil_h * r, iw = ow * s.stride_w - s.pad_w + s.dil_w * q;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                acc += x[((size_t(n) * s.c_in + c) * s.h + ih) * s.w + iw] *
                       w[((size_t(k) * s.c_in + c) * s.kh + r) * s.kw + q];
              }
          y[((size_t(n) * s.c_out + k) * s.oh + oh) * s.ow + ow] = acc;
        }
  return y;
}

// The input gradient of forward() by scattering: every (output pixel, tap) adds to the input pixel it read.
std::vector<double> dgrad(const Conv2dShape& s, const std::vector<double>& gy, const std::vector<double>& w) {
  std::vector<double> gx(size_t(s.n) * s.c_in * s.h * s.w, 0.0);
  for (int n = 0; n < s.n; ++n)
    for (int k = 0; k < s.c_out; ++k)
      for (int oh = 0; oh < s.oh; ++oh)
        for (int ow = 0; ow < s.ow; ++ow)
          for (int c = 0; c < s.c_in; ++c)
            for (int r = 0; r < s.kh; ++r)
              for (int q = 0; q < s.kw; ++q) {
                const int ih = oh * s.stride_h - s.pad_h + s.dil_h * r, iw = ow * s.stride_w - s.pad_w + s.dil_w * q;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                gx[((size_t(n) * s.c_in + c) * s.h + ih) * s.w + iw] +=
                    gy[((size_t(n) * s.c_out + k) * s.oh + oh) * s.ow + ow] *
                    w[((size_t(k) * s.c_in + c) * s.kh + r) * s.kw + q];
              }
  return gx;
}

// w'[c][k][r][q] = w[k][c][R-1-r][S-1-q], shape [C_in][C_out][R][S].
std::vector<double> flip_transpose(const Conv2dShape& s, const std::vector<double>& w) {
  std::vector<double> w2(w.size());
  for (int k = 0; k < s.c_out; ++k)
    for (int c = 0; c < s.c_in; ++c)
      for (int r = 0; r < s.kh; ++r)
        for (int q = 0; q < s.kw; ++q)
          w2[((size_t(c) * s.c_out + k) * s.kh + r) * s.kw + q] =
              w[((size_t(k) * s.c_in + c) * s.kh + (s.kh - 1 - r)) * s.kw + (s.kw - 1 - q)];
  return w2;
}

Conv2dShape shape(int n, int c_in, int h, int w, int c_out, int oh, int ow, int kh, int kw, int pad_h, int pad_w,
                  int dil_h, int dil_w, int stride_h = 1, int stride_w = 1, int groups = 1) {
  return Conv2dShape{n,           c_in,        h,        w,      c_out,  oh,     ow,     kh,    kw,
                     groups,      c_in / groups, c_out / groups, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w};
}

// One random stride-1 problem: returns the number of value mismatches (0 when the plan is right).
int check_random(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int kh = pick(1, 4), kw = pick(1, 4), dil_h = pick(1, 3), dil_w = pick(1, 3);
  const int span_h = dil_h * (kh - 1), span_w = dil_w * (kw - 1);
  const int pad_h = pick(0, span_h), pad_w = pick(0, span_w);        // top/left: any the plan accepts
  const int pad_h_hi = pick(0, span_h + 2), pad_w_hi = pick(0, span_w + 2);  // bottom/right: implied by OH, OW
  const int h = pick(1, 9), w = pick(1, 9);
  const int oh = h + pad_h + pad_h_hi - span_h, ow = w + pad_w + pad_w_hi - span_w;
  if (oh < 1 || ow < 1) return -1;  // no output: not a problem the op accepts
  const Conv2dShape s = shape(pick(1, 2), pick(1, 5), h, w, pick(1, 5), oh, ow, kh, kw, pad_h, pad_w, dil_h, dil_w);

  const DgradAsFwd plan = dgrad_as_fwd(s, 2);
  if (!plan.applies()) {
    fail(plan.why_not, s);
    return 1;
  }
  const Conv2dShape& f = plan.fwd;
  // The planned forward's output extent is exactly H x W given its implied bottom/right padding (the shapes'
  // rule), its bottom/right padding is d*(K-1) - (the op's), and host::check_geometry would accept it.
  const long long fh_hi = (long long)f.oh - f.h - f.pad_h + span_h, fw_hi = (long long)f.ow - f.w - f.pad_w + span_w;
  if (f.oh != h || f.ow != w || fh_hi != span_h - pad_h_hi || fw_hi != span_w - pad_w_hi ||
      out_extent(f.h, f.pad_h, fh_hi, f.kh, 1, f.dil_h) != h || out_extent(f.w, f.pad_w, fw_hi, f.kw, 1, f.dil_w) != w ||
      f.pad_h < 0 || f.pad_w < 0) {
    fail("planned forward geometry", s);
    return 1;
  }
  if (f.n != s.n || f.c_in != s.c_out || f.cg_in != s.c_out || f.c_out != s.c_in || f.cg_out != s.c_in ||
      f.h != s.oh || f.w != s.ow || f.kh != s.kh || f.kw != s.kw || f.groups != 1 || f.stride_h != 1 ||
      f.stride_w != 1 || f.dil_h != s.dil_h || f.dil_w != s.dil_w) {
    fail("planned forward fields", s);
    return 1;
  }

  std::normal_distribution<double> normal;
  std::vector<double> gy(size_t(s.n) * s.c_out * s.oh * s.ow), wt(size_t(s.c_out) * s.c_in * s.kh * s.kw);
  for (double& v : gy) v = normal(rng);
  for (double& v : wt) v = normal(rng);
  const std::vector<double> want = dgrad(s, gy, wt);
  const std::vector<double> got = forward(f, gy, flip_transpose(s, wt));
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) bad += !(std::fabs(got[i] - want[i]) <= 1e-9 * (1 + std::fabs(want[i])));
  if (bad) fail("dgrad != planned forward", s);
  return bad ? 1 : 0;
}

// w'_phase[c][k][j][l] = w[k][c][r0 + (taps_h-1-j)*rq][s0 + (taps_w-1-l)*sq], shape [C_in][C_out][taps_h][taps_w].
std::vector<double> phase_weight(const Conv2dShape& s, const DgradPhase& p, const std::vector<double>& w) {
  const int th = p.y.taps, tw = p.x.taps;
  std::vector<double> w2(size_t(s.c_in) * s.c_out * th * tw);
  for (int k = 0; k < s.c_out; ++k)
    for (int c = 0; c < s.c_in; ++c)
      for (int j = 0; j < th; ++j)
        for (int l = 0; l < tw; ++l) {
          const int r = p.y.r0 + (th - 1 - j) * p.y.rq, q = p.x.r0 + (tw - 1 - l) * p.x.rq;
          w2[((size_t(c) * s.c_out + k) * th + j) * tw + l] = w[((size_t(k) * s.c_in + c) * s.kh + r) * s.kw + q];
        }
  return w2;
}

// One random problem with stride 1-3 through the phase plan: -1 no problem drawn, 0 checked, 1 failed,
// 2 refused (counted, not a failure: the plan may refuse padding it cannot express).
int check_random_phases(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int kh = pick(1, 4), kw = pick(1, 4), dil_h = pick(1, 3), dil_w = pick(1, 3);
  const int sh = pick(1, 3), sw = pick(1, 3);
  const int span_h = dil_h * (kh - 1), span_w = dil_w * (kw - 1);
  const int pad_h = pick(0, span_h + 2), pad_w = pick(0, span_w + 2);  // past the span: skipped grad_out rows
  const int h = pick(1, 11), w = pick(1, 11);
  const long long oh = out_extent(h, pad_h, pick(0, span_h + 2), kh, sh, dil_h);
  const long long ow = out_extent(w, pad_w, pick(0, span_w + 2), kw, sw, dil_w);
  if (oh < 1 || ow < 1) return -1;
  const Conv2dShape s = shape(pick(1, 2), pick(1, 4), h, w, pick(1, 4), int(oh), int(ow), kh, kw, pad_h, pad_w,
                              dil_h, dil_w, sh, sw);
  const DgradPhasesAsFwd plan = dgrad_phases_as_fwd(s, 2);
  if (!plan.applies()) return 2;

  std::normal_distribution<double> normal;
  std::vector<double> gy(size_t(s.n) * s.c_out * s.oh * s.ow), wt(size_t(s.c_out) * s.c_in * s.kh * s.kw);
  for (double& v : gy) v = normal(rng);
  for (double& v : wt) v = normal(rng);
  std::vector<double> got(size_t(s.n) * s.c_in * s.h * s.w, 0.0);
  std::vector<int> cover(size_t(s.h) * s.w, 0);
  for (const DgradPhase& p : plan.phases) {
    for (int i = 0; i < p.y.extent; ++i)
      for (int j = 0; j < p.x.extent; ++j) ++cover[size_t(p.ph + i * sh) * s.w + p.pw + j * sw];
    if (p.zero()) continue;
    const Conv2dShape& f = p.fwd;
    const long long fh_hi = (long long)f.oh - f.h - f.pad_h + (long long)f.dil_h * (f.kh - 1);
    const long long fw_hi = (long long)f.ow - f.w - f.pad_w + (long long)f.dil_w * (f.kw - 1);
    if (f.oh != p.y.extent || f.ow != p.x.extent || f.pad_h < 0 || f.pad_w < 0 || fh_hi != p.y.pad_hi ||
        fw_hi != p.x.pad_hi || f.h != s.oh - p.y.skip || f.w != s.ow - p.x.skip || f.h < 1 || f.w < 1 ||
        f.c_in != s.c_out ||
        f.c_out != s.c_in || f.stride_h != 1 || f.stride_w != 1 ||
        out_extent(f.h, f.pad_h, fh_hi, f.kh, 1, f.dil_h) != f.oh || out_extent(f.w, f.pad_w, fw_hi, f.kw, 1, f.dil_w) != f.ow) {
      fail("planned phase forward geometry", s);
      return 1;
    }
    // The forward's input: grad_out from row skip_h, column skip_w on.
    std::vector<double> gin(size_t(s.n) * s.c_out * f.h * f.w);
    for (int n = 0; n < s.n; ++n)
      for (int k = 0; k < s.c_out; ++k)
        for (int i = 0; i < f.h; ++i)
          for (int j = 0; j < f.w; ++j)
            gin[((size_t(n) * s.c_out + k) * f.h + i) * f.w + j] =
                gy[((size_t(n) * s.c_out + k) * s.oh + i + p.y.skip) * s.ow + j + p.x.skip];
    const std::vector<double> y = forward(f, gin, phase_weight(s, p, wt));
    for (int n = 0; n < s.n; ++n)
      for (int c = 0; c < s.c_in; ++c)
        for (int i = 0; i < f.oh; ++i)
          for (int j = 0; j < f.ow; ++j)
            got[((size_t(n) * s.c_in + c) * s.h + p.ph + i * sh) * s.w + p.pw + j * sw] =
                y[((size_t(n) * f.c_out + c) * f.oh + i) * f.ow + j];
  }
  if (std::any_of(cover.begin(), cover.end(), [](int c) { return c != 1; })) {
    fail("phases do not cover grad_in exactly once", s);
    return 1;
  }
  const std::vector<double> want = dgrad(s, gy, wt);
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) bad += !(std::fabs(got[i] - want[i]) <= 1e-9 * (1 + std::fabs(want[i])));
  if (bad) fail("dgrad != assembled phase forwards", s);
  return bad ? 1 : 0;
}

// The phases of one strided layer: how many, how many all-zero, every one with taps applies.
void expect_phases(const Conv2dShape& s, int count, int zeros, const char* what) {
  const DgradPhasesAsFwd plan = dgrad_phases_as_fwd(s, 2);
  int z = 0;
  for (const DgradPhase& p : plan.phases) z += p.zero();
  if (!plan.applies() || int(plan.phases.size()) != count || z != zeros) {
    std::fprintf(stderr, "  %s: %s, %zu phases (%d zero), expected %d (%d)\n", what,
                 plan.applies() ? "applies" : plan.why_not, plan.phases.size(), z, count, zeros);
    fail(what, s);
  }
}

void expect_refused(const Conv2dShape& s, int elem_bytes, const char* reason_part) {
  const DgradAsFwd plan = dgrad_as_fwd(s, elem_bytes);
  if (plan.applies() || std::strstr(plan.why_not, reason_part) == nullptr) {
    std::fprintf(stderr, "  expected a refusal containing \"%s\", got %s\n", reason_part,
                 plan.applies() ? "applies" : plan.why_not);
    fail("refusal", s);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(14);
  int runs = 0;
  while (runs < 400) {
    const int r = check_random(rng);
    if (r >= 0) ++runs;
  }

  // ResNet-50's stride-1 layers apply, 3x3 p1 -> p' = 1, 1x1 p0 -> p' = 0.
  for (const int c : {64, 128, 256, 512}) {
    const int hw = 56 * 64 / c;
    const DgradAsFwd p3 = dgrad_as_fwd(shape(256, c, hw, hw, c, hw, hw, 3, 3, 1, 1, 1, 1), 2);
    if (!p3.applies() || p3.fwd.pad_h != 1 || p3.fwd.pad_w != 1 || p3.fwd.oh != hw)
      fail("ResNet-50 3x3", shape(256, c, hw, hw, c, hw, hw, 3, 3, 1, 1, 1, 1));
    const DgradAsFwd p1 = dgrad_as_fwd(shape(256, 4 * c, hw, hw, c, hw, hw, 1, 1, 0, 0, 1, 1), 2);
    if (!p1.applies() || p1.fwd.pad_h != 0 || p1.fwd.c_in != c || p1.fwd.c_out != 4 * c)
      fail("ResNet-50 1x1", shape(256, 4 * c, hw, hw, c, hw, hw, 1, 1, 0, 0, 1, 1));
  }

  int phase_runs = 0, phase_refused = 0;
  while (phase_runs < 600) {
    const int r = check_random_phases(rng);
    if (r >= 0) ++phase_runs;
    phase_refused += r == 2;
  }
  if (phase_refused > phase_runs / 4) {
    std::fprintf(stderr, "  the phase plan refused %d of %d random problems\n", phase_refused, phase_runs);
    ++g_failures;
  }
  // ResNet-50's strided layers: 3x3 s2 p1 (4 phases: taps 1x1, 1x2, 2x1, 2x2), 1x1 s2 downsample (1 phase
  // with the tap, 3 zero phases); DCGAN's 4x4 s2 p1 transposed convs (the dgrad of a 4x4 s2 p1 conv: 4 phases
  // of 2x2 taps), also with odd extents.
  expect_phases(shape(256, 128, 56, 56, 128, 28, 28, 3, 3, 1, 1, 1, 1, 2, 2), 4, 0, "ResNet-50 3x3 s2");
  expect_phases(shape(256, 256, 56, 56, 512, 28, 28, 1, 1, 0, 0, 1, 1, 2, 2), 4, 3, "ResNet-50 1x1 s2");
  expect_phases(shape(128, 256, 16, 16, 512, 8, 8, 4, 4, 1, 1, 1, 1, 2, 2), 4, 0, "DCGAN 4x4 s2 p1");
  expect_phases(shape(2, 64, 7, 9, 64, 4, 5, 3, 3, 1, 1, 1, 1, 2, 2), 4, 0, "3x3 s2 odd extents");
  expect_phases(shape(2, 64, 9, 9, 64, 3, 3, 3, 3, 0, 0, 1, 1, 3, 3), 9, 0, "3x3 s3 p0");
  {
    const DgradPhasesAsFwd dc = dgrad_phases_as_fwd(shape(128, 256, 16, 16, 512, 8, 8, 4, 4, 1, 1, 1, 1, 2, 2), 2);
    for (const DgradPhase& p : dc.phases)
      if (p.fwd.kh != 2 || p.fwd.kw != 2 || p.fwd.oh != 8 || p.fwd.pad_h != (p.ph == 0 ? 1 : 0))
        fail("DCGAN phase shape", shape(128, 256, 16, 16, 512, 8, 8, 4, 4, 1, 1, 1, 1, 2, 2));
  }

  expect_refused(shape(2, 64, 8, 8, 64, 8, 8, 3, 3, 1, 1, 1, 1), 4, "fp32");
  expect_refused(shape(2, 64, 8, 8, 64, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2), 2, "grouped");
  expect_refused(shape(2, 64, 8, 8, 64, 4, 8, 3, 3, 1, 1, 1, 1, 2, 1), 2, "stride");
  expect_refused(shape(2, 64, 8, 8, 64, 8, 4, 3, 3, 1, 1, 1, 1, 1, 2), 2, "stride");
  // 1x1 with padding 1: the border of grad_out never reaches grad_in; the forward starts one row and column in.
  {
    const DgradPhasesAsFwd p = dgrad_phases_as_fwd(shape(2, 64, 8, 8, 64, 10, 10, 1, 1, 1, 1, 1, 1), 2);
    if (!p.applies() || p.phases.size() != 1 || p.phases[0].y.skip != 1 || p.phases[0].x.skip != 1 ||
        p.phases[0].fwd.h != 9 || p.phases[0].fwd.pad_h != 0 || p.phases[0].fwd.oh != 8)
      fail("1x1 with padding 1: skip one grad_out row", shape(2, 64, 8, 8, 64, 10, 10, 1, 1, 1, 1, 1, 1));
  }
  // Bottom padding 3 > 2 = d*(K-1) (OH = 8 + 1 + 3 - 2 = 10): the forward crops (grad_out's last row, made
  // of padding alone, reaches no grad_in row) and is still the dgrad: checked by value among the random
  // problems below (bottom padding up to d*(K-1) + 2); here that it applies.
  if (!dgrad_as_fwd(shape(2, 64, 8, 8, 64, 10, 8, 3, 3, 1, 1, 1, 1), 2).applies())
    fail("bottom padding past d*(K-1)", shape(2, 64, 8, 8, 64, 10, 8, 3, 3, 1, 1, 1, 1));
  expect_refused(shape(1, 64, 8, 8, 64, 8, 8, 3, 3, 1, 1 << 29, 1, 1 << 29), 2, "32 bits");

  if (g_failures) {
    std::fprintf(stderr, "test_dgrad_as_fwd: %d FAILURES (%d random problems)\n", g_failures, runs);
    return 1;
  }
  std::printf("test_dgrad_as_fwd: all passed (%d random stride-1 problems, %d random strided ones through the phase "
              "plan of which %d refused, ResNet-50 / DCGAN shapes, 5 refusals)\n",
              runs, phase_runs, phase_refused);
  return 0;
}
