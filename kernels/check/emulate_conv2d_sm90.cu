// Host replay of the sm_90a conv2d forward kernel (conv/conv2d_fwd_sm90.cuh), which cannot run here: no
// GPU, and wgmma/TMA have no host equivalent. What is replayed, per block of the persistent grid:
//
//  * the pipeline protocol: mbarriers modelled as the PTX ISA describes them (pending arrivals + tx bytes,
//    phase parity, try_wait.parity succeeding once the phase with that parity completed); the producer
//    and the two consumer warpgroups are state machines that only advance when the kernel's own waits
//    (Pipe::stage / full_parity / empty_parity) would succeed, and a random scheduler interleaves them
//    with the completions of the asynchronous copies. No progress with work left = deadlock = failure.
//  * the producer: the kernel's AProducer::for_each_copy gives every 16-byte cp.async (destination,
//    source, zero-fill); the destination is poisoned (NaN) at issue and written when the copy lands, each
//    producer thread's copies land in order and then perform its .noinc arrival. The weight TMA is
//    replayed from the host geometry csrc encodes (FwdArgs::weight_map): box {64 k, BN rows} at the
//    kernel's coordinates, out-of-bounds zero fill, and the documented 128-byte swizzle of TMA
//    (16-byte chunk j of 128-byte row r at chunk j ^ (r % 8)), then complete_tx of the box bytes.
//  * the consumers' wgmma: the operands are read through the kernel's descriptors (a_desc / b_desc)
//    decoded by the documented K-major 128-byte-swizzle canonical layout (start address, stride byte
//    offset between 8-row groups, address bits [4,7) ^= [7,10)); independent of sw128_offset, so a wrong
//    producer swizzle or descriptor field shows. Operands are read when the wgmma is issued AND again
//    when its group retires (wait_group<1> / <0>): a difference means the stage was overwritten while the
//    MMA could still read it (released too early). The fp32 product is scattered into the register
//    fragments by the documented m64nNk16 accumulator layout, and the kernel's store_tile (with its
//    acc_row and quad exchange; __shfl_sync replayed as "the source lane's quad_send of the same round")
//    writes them through the conv epilogue.
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
#include <random>
#include <vector>

#include "check/emulate_compare.cuh"
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

// ---- mbarrier model (PTX ISA "mbarrier": phase completes when pending arrivals and tx-count are zero)
struct MBar {
  int count = 0, pending = 0, tx = 0;
  unsigned phase = 0;
  bool inited = false;
  void init(int c) {
    count = pending = c;
    tx = 0;
    phase = 0;
    inited = true;
  }
  void complete_if_done() {
    if (pending == 0 && tx == 0) {
      ++phase;
      pending = count;
    }
  }
  bool arrive(const char* who) {
    if (!inited || pending <= 0) {
      std::printf("  mbarrier misuse: arrive by %s\n", who);
      return false;
    }
    --pending;
    complete_if_done();
    return true;
  }
  void expect_tx(int bytes) { tx += bytes; }
  bool complete_tx(int bytes) {
    tx -= bytes;
    if (tx < 0) return false;
    complete_if_done();
    return true;
  }
  // try_wait.parity(P): true once the phase with parity P has completed, i.e. the current phase's parity
  // differs from P (a fresh barrier is in phase 0, so P = 1 passes at once).
  bool try_wait(unsigned parity) const { return (phase & 1u) != (parity & 1u); }
};

// ---- documented operand fetch of wgmma (K-major, 128-byte swizzle), from a descriptor
struct DescFields {
  uint32_t start, lbo, sbo, base_off, layout;
};
DescFields decode(uint64_t d) {
  return DescFields{static_cast<uint32_t>(d & 0x3FFF) << 4, static_cast<uint32_t>((d >> 16) & 0x3FFF) << 4,
                    static_cast<uint32_t>((d >> 32) & 0x3FFF) << 4, static_cast<uint32_t>((d >> 49) & 7),
                    static_cast<uint32_t>(d >> 62)};
}
// Byte address of element (row, k) (k < 16, 2-byte elements) of the operand described by d.
bool operand_addr(uint64_t d, int row, int k, uint32_t& addr) {
  const DescFields f = decode(d);
  if (f.layout != 1 || f.base_off != 0) return false;
  const uint32_t linear = f.start + static_cast<uint32_t>(row / 8) * f.sbo + static_cast<uint32_t>(row % 8) * 128 +
                          static_cast<uint32_t>(k) * 2;
  addr = linear ^ (((linear >> 7) & 7u) << 4);
  return true;
}

template <class T>
float smem_elem(const std::vector<unsigned char>& smem, uint32_t addr, bool& ok) {
  if (addr + 2 > smem.size() || addr % 2) {
    ok = false;
    return NAN;
  }
  T v;
  std::memcpy(&v, smem.data() + addr, 2);
  return Num<T>::to_float(v);
}

struct Case {
  int n, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw;
  const char* name;
  int oh() const { return (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  int ow() const { return (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
  Conv2dShape shape() const {
    return Conv2dShape{n, cin, h, w, cout, oh(), ow(), kh, kw, 1, cin, cout, sh, sw, ph, pw, dh, dw};
  }
};

double act_ref(int a, double z) {
  switch (a) {
    case kActRelu: return z < 0 ? 0.0 : z;
    case kActRelu6: return z < 0 ? 0.0 : (z > 6 ? 6.0 : z);
    case kActSilu: return z / (1.0 + std::exp(-z));
    default: return z;
  }
}

// One block of the persistent grid, replayed to completion. Returns false on a protocol failure.
template <class T, EpiKind E, int BN>
bool replay_block(const sm90::FwdArgs<T, E, BN>& args, const Conv2dFwdParams<T>& prm, int block, int grid,
                  std::mt19937& rng) {
  using Tile = sm90::FwdTile<BN>;
  using P = sm90::Pipe<Tile>;
  constexpr int S = Tile::kStages;
  constexpr int R = Tile::kAccRegs;
  const sm90::WeightMapGeometry g = sm90::FwdArgs<T, E, BN>::weight_map(prm);
  std::vector<unsigned char> smem(size_t(S) * Tile::kStageBytes, 0xFF);  // 0xFFFF: NaN in fp16 and bf16
  MBar full[S], empty[S];
  for (int s = 0; s < S; ++s) {
    full[s].init(Tile::kFullCount);
    empty[s].init(Tile::kEmptyCount);
  }
  std::vector<int> tiles;
  for (int t = block; t < args.sched.num_tiles(); t += grid) tiles.push_back(t);
  const int kt_n = args.sched.k_tiles;
  const int total_it = static_cast<int>(tiles.size()) * kt_n;
  bool ok = true;

  // Pending asynchronous work.
  struct Copy {
    uint32_t dst;
    const T* src;
    bool valid;
  };
  struct ThreadGroup {  // one producer thread's copies of one iteration, then its .noinc arrival
    std::vector<Copy> copies;
    int stage;
  };
  std::vector<std::deque<ThreadGroup>> cp_queues(Tile::kProducerThreads);
  struct TmaJob {
    int stage, c0, c1;
  };
  std::vector<TmaJob> tma_jobs;

  // Producer state.
  int p_it = 0;
  sm90::AProducer<T, E, BN> prod[Tile::kProducerThreads];

  // Consumer state.
  struct Group {
    int stage;
    std::vector<float> a, b;  // snapshot at issue: a[kk][64][16], b[kk][BN][16]
    uint64_t da[Tile::kKSteps], db[Tile::kKSteps];
  };
  struct Consumer {
    int it = 0, it0 = 0;
    std::deque<Group> inflight;
    std::vector<float> d;  // 64 x BN fp32
    bool done = false;
  } cons[Tile::kConsumers];
  for (auto& c : cons) c.d.assign(size_t(64) * BN, 0.0f);

  auto read_operands = [&](const Group& grp, std::vector<float>& a, std::vector<float>& b) -> bool {
    a.assign(size_t(Tile::kKSteps) * 64 * 16, 0.0f);
    b.assign(size_t(Tile::kKSteps) * BN * 16, 0.0f);
    bool good = true;
    for (int kk = 0; kk < Tile::kKSteps; ++kk)
      for (int k = 0; k < 16; ++k) {
        for (int r = 0; r < 64; ++r) {
          uint32_t addr;
          good &= operand_addr(grp.da[kk], r, k, addr);
          a[(size_t(kk) * 64 + r) * 16 + k] = smem_elem<T>(smem, addr, good);
        }
        for (int r = 0; r < BN; ++r) {
          uint32_t addr;
          good &= operand_addr(grp.db[kk], r, k, addr);
          b[(size_t(kk) * BN + r) * 16 + k] = smem_elem<T>(smem, addr, good);
        }
      }
    return good;
  };
  auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
    return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  // Retires the oldest in-flight group of consumer w: re-read, compare with the issue snapshot, multiply.
  auto retire = [&](Consumer& c) {
    Group grp = std::move(c.inflight.front());
    c.inflight.pop_front();
    std::vector<float> a, b;
    if (!read_operands(grp, a, b)) {
      std::printf("  wgmma operand outside shared memory / bad descriptor at retire\n");
      ok = false;
    }
    if (!same(a, grp.a) || !same(b, grp.b)) {
      std::printf("  stage %d changed between wgmma issue and retire (released or refilled too early)\n", grp.stage);
      ok = false;
    }
    for (int kk = 0; kk < Tile::kKSteps; ++kk)
      for (int r = 0; r < 64; ++r)
        for (int col = 0; col < BN; ++col) {
          float s = 0.0f;
          for (int k = 0; k < 16; ++k)
            s += grp.a[(size_t(kk) * 64 + r) * 16 + k] * grp.b[(size_t(kk) * BN + col) * 16 + k];
          c.d[size_t(r) * BN + col] += s;
        }
  };
  auto release = [&](int stage) {
    for (int warp = 0; warp < 4; ++warp) ok &= empty[stage].arrive("consumer warp (empty)");
  };

  // The documented accumulator layout, independent of the kernel's acc_row / acc_col.
  auto fragments = [&](const Consumer& c, int t, float (&frag)[R]) {
    const int warp = t / 32, lane = t % 32;
    for (int i = 0; i < R; ++i) {
      const int row = 16 * warp + lane / 4 + 8 * ((i / 2) % 2);
      const int col = 8 * (i / 4) + 2 * (lane % 4) + (i % 2);
      frag[i] = c.d[size_t(row) * BN + col];
    }
  };

  int steps = 0;
  for (;;) {
    // Runnable actions: 0 producer, 1/2 consumers, 3 a TMA job, 4 a producer thread's copy group.
    std::vector<std::pair<int, int>> acts;
    if (p_it < total_it && empty[P::stage(p_it)].try_wait(P::empty_parity(p_it))) acts.push_back({0, 0});
    for (int w = 0; w < Tile::kConsumers; ++w)
      if (!cons[w].done && cons[w].it < total_it && full[P::stage(cons[w].it)].try_wait(P::full_parity(cons[w].it)))
        acts.push_back({1, w});
      else if (!cons[w].done && cons[w].it == total_it)
        acts.push_back({2, w});  // tile tail already handled per tile; marks completion
    for (size_t j = 0; j < tma_jobs.size(); ++j) acts.push_back({3, static_cast<int>(j)});
    for (int pt = 0; pt < Tile::kProducerThreads; ++pt)
      if (!cp_queues[pt].empty()) acts.push_back({4, pt});
    bool all_done = p_it == total_it;
    for (auto& c : cons) all_done &= c.done;
    if (acts.empty()) {
      if (!all_done) {
        std::printf("  deadlock: producer at it %d/%d, consumers at %d, %d\n", p_it, total_it, cons[0].it, cons[1].it);
        return false;
      }
      break;
    }
    if (++steps > 1000000) {
      std::printf("  no termination\n");
      return false;
    }
    const auto act = acts[std::uniform_int_distribution<size_t>(0, acts.size() - 1)(rng)];
    if (act.first == 0) {  // producer: one k tile into stage s
      const int it = p_it++;
      const int s = P::stage(it);
      const int local_tile = it / kt_n, kt = it % kt_n;
      int m0, n0;
      args.sched.template coords<Tile>(tiles[local_tile], m0, n0);
      const int k_base = kt * Tile::kBK;
      const uint32_t st = static_cast<uint32_t>(s * Tile::kStageBytes);
      // thread 0: expect_tx arrival, then the TMA (its bytes land later)
      full[s].expect_tx(Tile::kBBytes);
      ok &= full[s].arrive("producer expect_tx");
      std::memset(smem.data() + st + Tile::kABytes, 0xFF, Tile::kBBytes);
      tma_jobs.push_back(TmaJob{s, k_base, n0});
      for (int pt = 0; pt < Tile::kProducerThreads; ++pt) {
        if (kt == 0) prod[pt].init_tile(args.a, pt, m0);
        ThreadGroup grp{{}, s};
        prod[pt].for_each_copy(args.a, k_base, [&](uint32_t off, const T* src, bool valid) {
          if (off % 16 != 0 || off + 16 > static_cast<uint32_t>(Tile::kABytes)) {
            std::printf("  cp.async destination %u outside the A tile or misaligned\n", off);
            ok = false;
            return;
          }
          if (reinterpret_cast<uintptr_t>(src) % 16 != 0) {
            std::printf("  cp.async source misaligned\n");
            ok = false;
            return;
          }
          std::memset(smem.data() + st + off, 0xFF, 16);  // undefined until it lands
          grp.copies.push_back(Copy{st + off, src, valid});
        });
        cp_queues[pt].push_back(std::move(grp));
      }
    } else if (act.first == 1) {  // consumer w: one k tile
      Consumer& c = cons[act.second];
      const int w = act.second;
      const int it = c.it++;
      const int s = P::stage(it);
      const int kt = it % kt_n;
      if (kt == 0) {
        std::fill(c.d.begin(), c.d.end(), 0.0f);
        c.it0 = it;
      }
      Group grp;
      grp.stage = s;
      const uint32_t st = static_cast<uint32_t>(s * Tile::kStageBytes);
      for (int kk = 0; kk < Tile::kKSteps; ++kk) {
        grp.da[kk] = sm90::a_desc<Tile>(st, w, kk);
        grp.db[kk] = sm90::b_desc<Tile>(st, kk);
      }
      if (!read_operands(grp, grp.a, grp.b)) {
        std::printf("  wgmma operand outside shared memory / bad descriptor at issue\n");
        ok = false;
      }
      c.inflight.push_back(std::move(grp));
      while (c.inflight.size() > static_cast<size_t>(P::kMmaInFlight)) retire(c);  // wait_group<kMmaInFlight>
      if (P::released_it(it) >= c.it0) release(P::stage(P::released_it(it)));
      if (kt == kt_n - 1) {  // tile tail: wait_group<0>, release the rest, epilogue
        while (!c.inflight.empty()) retire(c);
        for (int r = P::released_it(it) + 1; r <= it; ++r)
          if (r >= c.it0) release(P::stage(r));
        int m0, n0;
        args.sched.template coords<Tile>(tiles[it / kt_n], m0, n0);
        std::vector<std::array<float, R>> frags(128);
        for (int t = 0; t < 128; ++t) {
          float f[R];
          fragments(c, t, f);
          std::copy(f, f + R, frags[t].begin());
        }
        for (int t = 0; t < 128; ++t) {
          float frag[R];
          std::copy(frags[t].begin(), frags[t].end(), frag);
          // __shfl_sync within the quad: what the source lane offers in the same round.
          auto xchg = [&](float, float, int src, int h, int jg, int r, float& r0, float& r1) {
            float fs[R];
            std::copy(frags[(t & ~3) | src].begin(), frags[(t & ~3) | src].end(), fs);
            sm90::quad_send<Tile>(fs, src, h, jg, r, r0, r1);
          };
          sm90::store_tile<Tile>(args.epi, frag, t, w, m0, n0, args.m, args.n, xchg);
        }
      }
    } else if (act.first == 2) {
      cons[act.second].done = true;
    } else if (act.first == 3) {  // a TMA box lands
      const TmaJob job = tma_jobs[act.second];
      tma_jobs.erase(tma_jobs.begin() + act.second);
      const uint32_t dst = static_cast<uint32_t>(job.stage * Tile::kStageBytes + Tile::kABytes);
      const unsigned char* wbytes = reinterpret_cast<const unsigned char*>(prm.w);
      for (uint32_t rr = 0; rr < g.box[1]; ++rr)
        for (uint32_t kk = 0; kk < g.box[0]; ++kk) {
          const uint64_t row = job.c1 + rr, col = job.c0 + kk;
          unsigned char e[2] = {0, 0};
          if (row < g.dims[1] && col < g.dims[0]) std::memcpy(e, wbytes + row * g.row_bytes + col * 2, 2);
          const uint32_t byte = kk * 2;
          const uint32_t off = rr * 128 + (((byte / 16) ^ (rr % 8)) * 16) + byte % 16;
          std::memcpy(smem.data() + dst + off, e, 2);
        }
      ok &= full[job.stage].complete_tx(static_cast<int>(g.box[0] * g.box[1] * 2));
    } else {  // a producer thread's copies land, then its .noinc arrival
      ThreadGroup grp = std::move(cp_queues[act.second].front());
      cp_queues[act.second].pop_front();
      for (const Copy& cp : grp.copies) {
        if (cp.valid) std::memcpy(smem.data() + cp.dst, cp.src, 16);
        else std::memset(smem.data() + cp.dst, 0, 16);
      }
      ok &= full[grp.stage].arrive("cp.async noinc");
    }
  }
  return ok;
}

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
  const auto args = sm90::FwdArgs<T, E, BN>::make(prm, out_layout != kNHWC);
  EXPECT(args.k % sm90::FwdTile<BN>::kBK == 0, "case %s: K not a multiple of 64", c.name);
  // What the host route requires of x (csrc: GatherMap::kChannelVec): channels-last, 16-byte vectors.
  EXPECT(x.channels_fast() && x.vec_ok(8), "case %s: x layout %s is not routable", c.name, emulate::layout_name(x_layout));

  bool proto = true;
  for (int b = 0; b < grid; ++b) proto &= replay_block(args, prm, b, grid, rng);

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
