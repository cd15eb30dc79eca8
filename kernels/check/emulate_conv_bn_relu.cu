// Host-side replay of the conv_bn_relu elementwise kernels (kernels/conv/conv_bn_relu.cuh), block by block,
// thread by thread, phase by phase (barrier-separated phases run for every thread before the next starts),
// against a double-precision reference of the kernel contract (cnnkern/problem/conv_bn.py). It runs the real
// planning (bn_plan) and then also forces the other choices the plan can make on a GPU (scalar access,
// 64-bit offsets, one or many splits, the channel-block loop of a short grid), for every activation, both
// iterations (channels-inner and planes), NCHW / channels_last / strided views (also mixed across y, grad
// and out), odd sizes and channel counts that are not a multiple of the vector width.
//
// Build/run: cmake target `cnnkern_emulate_conv_bn_relu` (ctest), under AddressSanitizer; outputs, partials
// and shared memory start as NaN, so an unwritten element or an unstaged table entry shows up.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "check/emulate_compare.cuh"
#include "check/emulate_tensor.cuh"
#include "conv/conv_bn_relu.cuh"

using namespace cnnkern;
using namespace cnnkern::emulate;

namespace {

int g_failures = 0;
int g_runs = 0;

struct PathStats {
  int cl = 0, planes = 0, vec = 0, scalar = 0, idx64 = 0, looped = 0;
} g_paths;

const char* op_name(BnOp op) {
  return op == BnOp::kNormalize ? "normalize" : (op == BnOp::kReduce ? "bwd_reduce" : "bwd_apply");
}
const char* act_name(int a) {
  static const char* names[] = {"none", "relu", "relu6", "silu"};
  return names[a];
}

// ---- replay (phase order of bn_kernel) ---------------------------------------------------------------------

template <class T, BnOp K, int A, bool kCL, int V, class Index>
void replay(const BnParams<T>& p) {
  using Block = BnBlock<T, K, A, kCL, V, Index>;
  const int nfloats = bn_smem_floats<K, V>(kCL);
  std::vector<float> smem(size_t(nfloats) + 4);
  float* table = smem.data();
  float* buf = smem.data() + bn_vec_count(K) * kBnTableMax;
  std::vector<Block> blk(p.threads);
  for (unsigned by = 0; by < p.grid_y; ++by)
    for (int bx = 0; bx < p.splits; ++bx) {
      for (int t = 0; t < p.threads; ++t) blk[t].init(p, bx, t);
      const int its = Block::iterations(p, by);
      for (int it = 0; it < its; ++it) {
        const int cb = Block::channel_block(p, by, it);
        for (float& f : smem) f = NAN;  // nothing may be read before it is staged
        for (auto& b : blk) b.stage(p, table, cb);
        for (auto& b : blk) b.run(p, table, cb);
        if constexpr (K == BnOp::kReduce) {
          for (auto& b : blk) b.red_put(p, buf);
          for (int s = tree_first_step(Block::tree_rows(p)); s > 0; s >>= 1)
            for (auto& b : blk) b.red_tree(p, buf, s);
          for (auto& b : blk) b.red_store(p, buf, cb);
        }
      }
    }
}

// The same kernel choice as csrc/cuda/conv_bn_relu_launch.cuh.
template <class T, BnOp K, int A, bool kCL>
void dispatch_v(const BnParams<T>& p) {
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  if (p.v == kV) {
    if (p.idx64) replay<T, K, A, kCL, kV, int64_t>(p);
    else replay<T, K, A, kCL, kV, int32_t>(p);
  } else {
    if (p.idx64) replay<T, K, A, kCL, 1, int64_t>(p);
    else replay<T, K, A, kCL, 1, int32_t>(p);
  }
}

template <class T, BnOp K, int A>
void dispatch_layout(const BnParams<T>& p) {
  if (p.cl) dispatch_v<T, K, A, true>(p);
  else dispatch_v<T, K, A, false>(p);
}

template <class T, BnOp K>
void dispatch_act(const BnParams<T>& p, int act) {
  switch (act) {
    case kActRelu: dispatch_layout<T, K, kActRelu>(p); break;
    case kActRelu6: dispatch_layout<T, K, kActRelu6>(p); break;
    case kActSilu: dispatch_layout<T, K, kActSilu>(p); break;
    default: dispatch_layout<T, K, kActNone>(p);
  }
}

template <class T>
void emulate(const BnParams<T>& p, BnOp op, int act) {
  switch (op) {
    case BnOp::kNormalize: dispatch_act<T, BnOp::kNormalize>(p, act); break;
    case BnOp::kReduce: dispatch_act<T, BnOp::kReduce>(p, act); break;
    case BnOp::kApply: dispatch_act<T, BnOp::kApply>(p, act); break;
  }
}

// ---- reference (double) -----------------------------------------------------------------------------------

double act_ref(int a, double z) {
  switch (a) {
    case kActRelu: return z < 0 ? 0.0 : z;
    case kActRelu6: return z < 0 ? 0.0 : (z > 6 ? 6.0 : z);
    case kActSilu: return z / (1.0 + std::exp(-z));
    default: return z;
  }
}
double act_grad_ref(int a, double z) {
  switch (a) {
    case kActRelu: return z > 0 ? 1.0 : 0.0;
    case kActRelu6: return (z > 0 && z < 6) ? 1.0 : 0.0;
    case kActSilu: {
      const double s = 1.0 / (1.0 + std::exp(-z));
      return s * (1.0 + z * (1.0 - s));
    }
    default: return 1.0;
  }
}

// ---- one run --------------------------------------------------------------------------------------------

struct Case {
  int n, c, h, w;
  const char* name;
};

// What the run forces beyond bn_plan's own choice.
struct Force {
  bool scalar = false;  // V = 1 even where 16-byte access is possible
  bool idx64 = false;   // 64-bit offsets
  int splits = 0;       // > 0: this many splits (clamped to the items)
  unsigned grid_y = 0;  // > 0: a short grid, blocks loop over channel blocks
  const char* name() const {
    static char s[64];
    std::snprintf(s, sizeof(s), "%s%s%s%s", scalar ? "scalar " : "", idx64 ? "idx64 " : "",
                  splits ? "splits " : "", grid_y ? "short_grid" : "");
    return s;
  }
};

struct ChanVec {
  std::vector<float> buf;
  int64_t stride;
  ChanVec(int c, int64_t st, std::mt19937& rng, float lo, float hi) : buf(size_t(c) * st + 1, 1e30f), stride(st) {
    std::uniform_real_distribution<float> u(lo, hi);
    for (int i = 0; i < c; ++i) buf[size_t(i) * st] = u(rng);
  }
  float at(int i) const { return buf[size_t(i) * stride]; }
  BnVec view() const { return BnVec{buf.data(), stride}; }
};

template <class T>
void run(const Case& cs, BnOp op, int act, const int (&layouts)[3], Force force, std::mt19937& rng) {
  ++g_runs;
  Tensor4<T> y(cs.n, cs.c, cs.h, cs.w, layouts[0]), grad(cs.n, cs.c, cs.h, cs.w, layouts[1]),
      out(cs.n, cs.c, cs.h, cs.w, layouts[2]);
  y.fill_random(rng);
  grad.fill_random(rng);
  out.fill_nan();
  const int64_t vst = layouts[0] == kNCHWView ? 2 : 1;  // per-channel vectors through a stride too
  // a, b, mean, invstd, k_dz, k_one, k_xhat; b spreads z around 0 so every activation branch is taken.
  std::vector<ChanVec> vecs;
  vecs.emplace_back(cs.c, vst, rng, -3.0f, 3.0f);
  vecs.emplace_back(cs.c, vst, rng, -1.0f, 4.0f);
  vecs.emplace_back(cs.c, vst, rng, -0.5f, 0.5f);
  vecs.emplace_back(cs.c, vst, rng, 0.5f, 2.0f);
  for (int i = 0; i < 3; ++i) vecs.emplace_back(cs.c, vst, rng, -2.0f, 2.0f);

  BnParams<T> p{};
  p.n = cs.n;
  p.c = cs.c;
  p.h = cs.h;
  p.w = cs.w;
  p.y = y.ptr;
  p.ys = y.st;
  if (op != BnOp::kNormalize) {
    p.grad = grad.ptr;
    p.gs = grad.st;
  }
  if (op != BnOp::kReduce) {
    p.out = out.ptr;
    p.os = out.st;
  }
  for (int k = 0; k < kBnVecs; ++k) p.vec[k] = vecs[k].view();
  bn_plan(&p, op, !force.scalar);
  if (force.idx64) p.idx64 = true;
  if (force.splits > 0) {
    const int steps = (p.items + p.per_block - 1) / p.per_block;
    p.splits = std::max(1, std::min(force.splits, steps));
  }
  if (force.grid_y > 0) p.grid_y = std::min<unsigned>(force.grid_y, p.cblocks);
  ++(p.cl ? g_paths.cl : g_paths.planes);
  ++(p.v > 1 ? g_paths.vec : g_paths.scalar);
  if (p.idx64) ++g_paths.idx64;
  if (int(p.grid_y) < p.cblocks) ++g_paths.looped;

  std::vector<float> partials;
  if (op == BnOp::kReduce) {
    partials.assign(size_t(p.splits) * cs.c * 2, NAN);
    p.partials = partials.data();
  }
  emulate(p, op, act);

  // Reference.
  int bad = 0;
  auto z_of = [&](int n, int c, int h, int w) {
    return double(y.get(n, c, h, w)) * vecs[kBnA].at(c) + vecs[kBnB].at(c);
  };
  // The derivative's mask comes from the fp32 z the kernel sees (bn_affine); near a discontinuity a
  // double z could fall on the other side.
  auto grad_of = [&](int n, int c, int h, int w) {
    const double zd = z_of(n, c, h, w);
    const double zf = bn_affine(y.get(n, c, h, w), vecs[kBnA].at(c), vecs[kBnB].at(c));
    return act == kActSilu ? act_grad_ref(act, zd) : act_grad_ref(act, zf);
  };
  auto xhat_of = [&](int n, int c, int h, int w) {
    return (double(y.get(n, c, h, w)) - vecs[kBnMean].at(c)) * vecs[kBnInvstd].at(c);
  };
  if (op == BnOp::kReduce) {
    std::vector<double> s0(cs.c, 0.0), s1(cs.c, 0.0), m0(cs.c, 0.0), m1(cs.c, 0.0);
    y.each([&](int n, int c, int h, int w) {
      const double dz = grad.get(n, c, h, w) * grad_of(n, c, h, w);
      const double xh = xhat_of(n, c, h, w);
      s0[c] += dz;
      s1[c] += dz * xh;
      m0[c] += std::fabs(dz);
      m1[c] += std::fabs(dz * xh);
    });
    int unwritten = 0;
    for (float v : partials) unwritten += std::isnan(v) ? 1 : 0;
    std::vector<float> r0(cs.c, NAN), r1(cs.c, NAN);
    const BnFinalizeParams f{partials.data(), p.splits, cs.c, r0.data(), 1, r1.data(), 1};
    for (int c = 0; c < cs.c; ++c) bn_finalize(f, c);
    for (int c = 0; c < cs.c; ++c) {
      // fp32 sums of N*H*W terms: the rounding error is bounded by a few ulp of the sum of magnitudes.
      const double tol = 1e-5;
      const bool ok0 = std::isfinite(r0[c]) && std::fabs(r0[c] - s0[c]) <= tol * m0[c] + 1e-6;
      const bool ok1 = std::isfinite(r1[c]) && std::fabs(r1[c] - s1[c]) <= tol * m1[c] + 1e-6;
      if ((!ok0 || !ok1) && bad++ < 4)
        std::printf("  %s c=%d: sum_dz %g (ref %g), sum_dz_xhat %g (ref %g)\n", cs.name, c, r0[c], s0[c], r1[c], s1[c]);
    }
    if (unwritten && bad++ < 4) std::printf("  %s: %d partials unwritten\n", cs.name, unwritten);
  } else {
    out.each([&](int n, int c, int h, int w) {
      double ref, mag;
      if (op == BnOp::kNormalize) {
        const double z = z_of(n, c, h, w);
        ref = act_ref(act, z);
        mag = std::fabs(double(y.get(n, c, h, w)) * vecs[kBnA].at(c)) + std::fabs(vecs[kBnB].at(c));
      } else {
        const double dz = grad.get(n, c, h, w) * grad_of(n, c, h, w);
        const double xh = xhat_of(n, c, h, w);
        ref = vecs[kBnKdz].at(c) * dz + vecs[kBnKone].at(c) + vecs[kBnKxhat].at(c) * xh;
        mag = std::fabs(vecs[kBnKdz].at(c) * dz) + std::fabs(vecs[kBnKone].at(c)) +
              std::fabs(vecs[kBnKxhat].at(c) * xh) * 2;
      }
      const float got = out.get(n, c, h, w);
      if (!close<T>(ref, mag, got) && bad++ < 4)
        std::printf("  %s out[%d,%d,%d,%d]=%g ref=%g\n", cs.name, n, c, h, w, got, ref);
    });
  }
  const int clob = out.clobbered();
  if (bad || clob) {
    ++g_failures;
    std::printf("FAIL %s %s act=%s layouts=%s/%s/%s %s(cl=%d v=%d idx64=%d splits=%d grid_y=%u): %d mismatches, "
                "%d writes outside the view\n",
                op_name(op), cs.name, act_name(act), layout_name(layouts[0]), layout_name(layouts[1]),
                layout_name(layouts[2]), force.name(), p.cl, p.v, p.idx64, p.splits, p.grid_y, bad, clob);
  }
}

template <class T>
void run_all(const std::vector<Case>& cases) {
  std::mt19937 rng(2024);
  const int same[][3] = {{kNCHW, kNCHW, kNCHW},
                         {kNHWC, kNHWC, kNHWC},
                         {kNCHWView, kNCHWView, kNCHWView},
                         {kNHWCSlice, kNHWCSlice, kNHWCSlice},
                         {kNHWCPadded, kNHWCPadded, kNHWCPadded},
                         // mixed: y decides the iteration, the others are read through their strides
                         {kNHWC, kNCHW, kNHWCPadded},
                         {kNCHW, kNHWC, kNCHWView}};
  const BnOp ops[] = {BnOp::kNormalize, BnOp::kReduce, BnOp::kApply};
  int i = 0;
  for (const Case& cs : cases)
    for (const auto& lay : same)
      for (BnOp op : ops)
        for (int act = 0; act < kActCount; ++act) {
          run<T>(cs, op, act, lay, Force{}, rng);
          // Rotate the forced alternatives over the matrix so each meets every op and activation.
          Force f;
          switch (i++ % 4) {
            case 0: f.scalar = true; break;
            case 1: f.idx64 = true; f.splits = 1; break;
            case 2: f.splits = 3; f.grid_y = 1; break;
            default: f.splits = 1000; f.grid_y = 2; f.scalar = true;
          }
          run<T>(cs, op, act, lay, f, rng);
        }
}

}  // namespace

int main() {
  // n c h w: odd sizes; C not a multiple of the vector width; C = 1; several channel blocks; planes whose
  // h*w is (not) a multiple of the vector width; more rows than one block step.
  const std::vector<Case> cases = {
      {2, 16, 5, 3, "c16"},         {3, 10, 7, 9, "c10_odd"},      {2, 3, 8, 8, "c3_plane64"},
      {1, 1, 4, 6, "c1"},           {2, 72, 3, 5, "c72_two_blocks"}, {1, 264, 2, 3, "c264_vec_blocks"},
      {5, 8, 16, 17, "many_rows"},  {4, 24, 1, 1, "pixels_1x1"},   {2, 40, 9, 1, "w1"},
  };
  run_all<float>(cases);
  std::printf("float: %s\n", g_failures ? "FAILED" : "ok");
  run_all<__half>(cases);
  std::printf("half: %s\n", g_failures ? "FAILED" : "ok");
  run_all<__nv_bfloat16>(cases);
  std::printf("bf16: %s\n", g_failures ? "FAILED" : "ok");
  std::printf("paths: channels_inner=%d planes=%d vec=%d scalar=%d idx64=%d channel_block_loop=%d\n", g_paths.cl,
              g_paths.planes, g_paths.vec, g_paths.scalar, g_paths.idx64, g_paths.looped);
  std::printf(g_failures ? "emulate_conv_bn_relu: %d FAILURES in %d runs\n" : "emulate_conv_bn_relu: all %d runs passed\n",
              g_failures ? g_failures : g_runs, g_runs);
  return g_failures ? 1 : 0;
}
