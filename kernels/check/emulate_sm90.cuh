// CPU model of the sm_90a warp-specialized pipelines (kernels/conv/conv2d_fwd_sm90.cuh and
// conv2d_wgrad_sm90.cuh), which cannot run here: no GPU, and wgmma / TMA have no host equivalent. One block of
// a persistent grid is replayed by replay_block() over a kernel model (below); what is modelled:
//
//  * mbarriers as the PTX ISA describes them (pending arrivals + tx bytes, phase parity, try_wait.parity
//    succeeding once the phase with that parity completed). The producer and the consumer warpgroups are
//    state machines that only advance when the kernel's own waits (sm90::Pipe: stage / full_parity /
//    empty_parity) would succeed; a random scheduler interleaves them with the completions of the
//    asynchronous copies. No progress with work left = deadlock = failure.
//  * cp.async: each copy's destination is poisoned (NaN) at issue and written when it lands; a producer
//    thread's copies of one iteration land in order, then its .noinc arrival.
//  * TMA: a 2-D box of a host Map2dGeometry (what csrc encodes), out-of-bounds elements zero, the
//    documented 128-byte swizzle (16-byte chunk j of 128-byte row r at chunk j ^ (r % 8)), then complete_tx
//    of the box bytes. Its destination is poisoned when the producer issues it.
//  * wgmma: operands read through the kernel's descriptors, decoded by the documented canonical layouts
//    (K-major: start + 8-row groups at SBO; MN-major: 64-wide MN blocks at LBO, 8-k groups at SBO; then
//    address bits [4,7) ^= [7,10)), independent of the producers' sw128_offset and of TMA, so a wrong
//    swizzle or descriptor field shows. Operands are read when a group is issued AND when it retires
//    (wait_group<kMmaInFlight> / <0>): a difference means the stage was refilled while the MMA could read
//    it. The product accumulates in fp32 into a 64 x N tile per consumer, which fragments() maps to the
//    documented m64nNk16 .f32 register layout for the kernel's epilogue.
//
// A kernel model M provides:
//   using Tile (kStages, kStageBytes, kConsumers, kProducerThreads, kFullCount, kEmptyCount, kKSteps);
//   using Elem; static constexpr int kN (accumulator columns); static constexpr bool kMnMajorA, kMnMajorB;
//   int items() const;  int k_tiles(int item) const (> 0);  int tx_bytes() const (TMA bytes per stage);
//   void produce(int item, int kt, uint32_t stage_offset, Tma tma, Copy copy): the producer's work for one
//     k tile: tma(dst_offset, geometry, base, c0, c1) per box, copy(pt, dst_offset, src, valid) per cp.async
//     (producer thread pt, in issue order);
//   void descs(int w, uint32_t stage_offset, int kk, uint64_t& da, uint64_t& db) const;
//   void epilogue(int w, int item, const std::vector<float>& d): consumer w's 64 x kN tile after the item.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <random>
#include <utility>
#include <vector>

#include "common/numeric.cuh"
#include "conv/conv2d_params.cuh"
#include "common/sm90/pipe.cuh"
#include "common/sm90/tma.cuh"

namespace cnnkern {
namespace emulate_sm90 {

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

struct DescFields {
  uint32_t start, lbo, sbo, base_off, layout;
};
inline DescFields decode(uint64_t d) {
  return DescFields{static_cast<uint32_t>(d & 0x3FFF) << 4, static_cast<uint32_t>((d >> 16) & 0x3FFF) << 4,
                    static_cast<uint32_t>((d >> 32) & 0x3FFF) << 4, static_cast<uint32_t>((d >> 49) & 7),
                    static_cast<uint32_t>(d >> 62)};
}

// Byte address of element (row, k), k < 16, of the 16-bit operand described by d: row is m (A) or n (B).
// K-major: a 128-byte row holds one row's k; MN-major: a 128-byte row holds 64 consecutive rows of one k.
inline bool operand_addr(uint64_t d, bool mn_major, int row, int k, uint32_t& addr) {
  const DescFields f = decode(d);
  if (f.layout != 1 || f.base_off != 0) return false;
  const uint32_t r = static_cast<uint32_t>(row), kk = static_cast<uint32_t>(k);
  const uint32_t linear = mn_major ? f.start + (r / 64) * f.lbo + (r % 64) * 2 + (kk / 8) * f.sbo + (kk % 8) * 128
                                   : f.start + (r / 8) * f.sbo + (r % 8) * 128 + kk * 2;
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

// The TMA box at (c0, c1) of the 2-D map g over the 16-bit matrix at base, into smem at dst (128-byte swizzle,
// out-of-bounds zero). Returns the bytes it counts toward the barrier's tx.
inline int land_tma_box(std::vector<unsigned char>& smem, uint32_t dst, const sm90::Map2dGeometry& g,
                        const void* base, int c0, int c1) {
  const unsigned char* bytes = static_cast<const unsigned char*>(base);
  for (uint32_t rr = 0; rr < g.box[1]; ++rr)
    for (uint32_t kk = 0; kk < g.box[0]; ++kk) {
      const uint64_t row = static_cast<uint64_t>(c1) + rr, col = static_cast<uint64_t>(c0) + kk;
      unsigned char e[2] = {0, 0};
      if (row < g.dims[1] && col < g.dims[0]) std::memcpy(e, bytes + row * g.row_bytes + col * 2, 2);
      const uint32_t byte = kk * 2;
      const uint32_t off = rr * 128 + (((byte / 16) ^ (rr % 8)) * 16) + byte % 16;
      std::memcpy(smem.data() + dst + off, e, 2);
    }
  return static_cast<int>(g.box[0] * g.box[1] * 2);
}

// A conv2d problem of the sm_90a emulators: one group, the shape of Conv2dShape without padding bottom / right
// (implicit in the extents).
struct ConvCase {
  int n, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw;
  const char* name;
  int oh() const { return (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  int ow() const { return (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
  Conv2dShape shape() const {
    return Conv2dShape{n, cin, h, w, cout, oh(), ow(), kh, kw, 1, cin, cout, sh, sw, ph, pw, dh, dw};
  }
};

// The documented accumulator layout of wgmma m64nNk16 .f32, independent of the kernels' acc_row / acc_col:
// register i of warpgroup thread t holds D[16 warp + lane / 4 + 8 ((i / 2) % 2)][8 (i / 4) + 2 (lane % 4) + i % 2].
inline void fragments(const std::vector<float>& d, int n, int t, float* frag) {
  const int warp = t / 32, lane = t % 32;
  for (int i = 0; i < n / 2; ++i) {
    const int row = 16 * warp + lane / 4 + 8 * ((i / 2) % 2);
    const int col = 8 * (i / 4) + 2 * (lane % 4) + (i % 2);
    frag[i] = d[static_cast<size_t>(row) * n + col];
  }
}

// One block of the persistent grid, replayed to completion under a random interleaving. Returns false on a
// protocol failure (misuse of a barrier, deadlock, a stage changed under an in-flight MMA, a bad descriptor).
template <class M>
bool replay_block(M& model, std::mt19937& rng) {
  using Tile = typename M::Tile;
  using T = typename M::Elem;
  using P = sm90::Pipe<Tile>;
  constexpr int S = Tile::kStages;
  constexpr int N = M::kN;
  std::vector<unsigned char> smem(static_cast<size_t>(S) * Tile::kStageBytes, 0xFF);  // 0xFFFF: NaN (fp16, bf16)
  MBar full[S], empty[S];
  for (int s = 0; s < S; ++s) {
    full[s].init(Tile::kFullCount);
    empty[s].init(Tile::kEmptyCount);
  }
  // Iteration -> (item, k tile of the item); the ring continues across items.
  std::vector<std::pair<int, int>> iters;
  for (int item = 0; item < model.items(); ++item) {
    if (model.k_tiles(item) <= 0) {
      std::printf("  item %d has no k tiles (the kernel would store an all-zero tile without waiting)\n", item);
      return false;
    }
    for (int kt = 0; kt < model.k_tiles(item); ++kt) iters.push_back({item, kt});
  }
  const int total_it = static_cast<int>(iters.size());
  bool ok = true;

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
    int stage;
    uint32_t dst;
    const sm90::Map2dGeometry* g;
    const void* base;
    int c0, c1;
  };
  std::vector<TmaJob> tma_jobs;
  int p_it = 0;

  struct Group {
    int stage;
    std::vector<float> a, b;  // snapshot at issue: a[kk][64][16], b[kk][N][16]
    uint64_t da[Tile::kKSteps], db[Tile::kKSteps];
  };
  struct Consumer {
    int it = 0, it0 = 0;
    std::deque<Group> inflight;
    std::vector<float> d;  // 64 x N fp32
    bool done = false;
  } cons[Tile::kConsumers];
  for (auto& c : cons) c.d.assign(static_cast<size_t>(64) * N, 0.0f);

  auto read_operands = [&](const Group& grp, std::vector<float>& a, std::vector<float>& b) -> bool {
    a.assign(static_cast<size_t>(Tile::kKSteps) * 64 * 16, 0.0f);
    b.assign(static_cast<size_t>(Tile::kKSteps) * N * 16, 0.0f);
    bool good = true;
    for (int kk = 0; kk < Tile::kKSteps; ++kk)
      for (int k = 0; k < 16; ++k) {
        for (int r = 0; r < 64; ++r) {
          uint32_t addr = 0;
          good &= operand_addr(grp.da[kk], M::kMnMajorA, r, k, addr);
          a[(static_cast<size_t>(kk) * 64 + r) * 16 + k] = smem_elem<T>(smem, addr, good);
        }
        for (int r = 0; r < N; ++r) {
          uint32_t addr = 0;
          good &= operand_addr(grp.db[kk], M::kMnMajorB, r, k, addr);
          b[(static_cast<size_t>(kk) * N + r) * 16 + k] = smem_elem<T>(smem, addr, good);
        }
      }
    return good;
  };
  auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
    return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
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
        for (int col = 0; col < N; ++col) {
          float s = 0.0f;
          for (int k = 0; k < 16; ++k)
            s += grp.a[(static_cast<size_t>(kk) * 64 + r) * 16 + k] * grp.b[(static_cast<size_t>(kk) * N + col) * 16 + k];
          c.d[static_cast<size_t>(r) * N + col] += s;
        }
  };
  auto release = [&](int stage) {
    for (int warp = 0; warp < 4; ++warp) ok &= empty[stage].arrive("consumer warp (empty)");
  };

  int steps = 0;
  for (;;) {
    // Runnable actions: 0 producer, 1 a consumer's k tile, 2 a finished consumer, 3 a TMA box, 4 a copy group.
    std::vector<std::pair<int, int>> acts;
    if (p_it < total_it && empty[P::stage(p_it)].try_wait(P::empty_parity(p_it))) acts.push_back({0, 0});
    for (int w = 0; w < Tile::kConsumers; ++w)
      if (!cons[w].done && cons[w].it < total_it && full[P::stage(cons[w].it)].try_wait(P::full_parity(cons[w].it)))
        acts.push_back({1, w});
      else if (!cons[w].done && cons[w].it == total_it)
        acts.push_back({2, w});
    for (size_t j = 0; j < tma_jobs.size(); ++j) acts.push_back({3, static_cast<int>(j)});
    for (int pt = 0; pt < Tile::kProducerThreads; ++pt)
      if (!cp_queues[pt].empty()) acts.push_back({4, pt});
    bool all_done = p_it == total_it;
    for (auto& c : cons) all_done &= c.done;
    if (acts.empty()) {
      if (!all_done) {
        std::printf("  deadlock: producer at it %d/%d, consumer 0 at %d\n", p_it, total_it, cons[0].it);
        return false;
      }
      break;
    }
    if (++steps > 4000000) {
      std::printf("  no termination\n");
      return false;
    }
    const auto act = acts[std::uniform_int_distribution<size_t>(0, acts.size() - 1)(rng)];
    if (act.first == 0) {  // producer: one k tile into stage s
      const int it = p_it++;
      const int s = P::stage(it);
      const uint32_t st = static_cast<uint32_t>(s * Tile::kStageBytes);
      // thread 0: expect_tx arrival, then the boxes (their bytes land later)
      full[s].expect_tx(model.tx_bytes());
      ok &= full[s].arrive("producer expect_tx");
      std::vector<ThreadGroup> groups(Tile::kProducerThreads, ThreadGroup{{}, s});
      model.produce(
          iters[it].first, iters[it].second, st,
          [&](uint32_t dst, const sm90::Map2dGeometry& g, const void* base, int c0, int c1) {
            const uint32_t bytes = g.box[0] * g.box[1] * 2;
            if (dst % 1024 != 0 || dst < st || dst + bytes > st + Tile::kStageBytes) {
              std::printf("  TMA destination %u outside the stage or not 1024-byte aligned\n", dst);
              ok = false;
              return;
            }
            std::memset(smem.data() + dst, 0xFF, bytes);
            tma_jobs.push_back(TmaJob{s, dst, &g, base, c0, c1});
          },
          [&](int pt, uint32_t dst, const T* src, bool valid) {
            if (dst % 16 != 0 || dst < st || dst + 16 > st + Tile::kStageBytes) {
              std::printf("  cp.async destination %u outside the stage or misaligned\n", dst);
              ok = false;
              return;
            }
            if (reinterpret_cast<uintptr_t>(src) % 16 != 0) {
              std::printf("  cp.async source misaligned\n");
              ok = false;
              return;
            }
            std::memset(smem.data() + dst, 0xFF, 16);  // undefined until it lands
            groups[pt].copies.push_back(Copy{dst, src, valid});
          });
      for (int pt = 0; pt < Tile::kProducerThreads; ++pt) cp_queues[pt].push_back(std::move(groups[pt]));
    } else if (act.first == 1) {  // consumer w: one k tile
      Consumer& c = cons[act.second];
      const int w = act.second;
      const int it = c.it++;
      const int s = P::stage(it);
      const int item = iters[it].first, kt = iters[it].second;
      if (kt == 0) {
        std::fill(c.d.begin(), c.d.end(), 0.0f);
        c.it0 = it;
      }
      Group grp;
      grp.stage = s;
      const uint32_t st = static_cast<uint32_t>(s * Tile::kStageBytes);
      for (int kk = 0; kk < Tile::kKSteps; ++kk) model.descs(w, st, kk, grp.da[kk], grp.db[kk]);
      if (!read_operands(grp, grp.a, grp.b)) {
        std::printf("  wgmma operand outside shared memory / bad descriptor at issue\n");
        ok = false;
      }
      c.inflight.push_back(std::move(grp));
      while (c.inflight.size() > static_cast<size_t>(P::kMmaInFlight)) retire(c);  // wait_group<kMmaInFlight>
      if (P::released_it(it) >= c.it0) release(P::stage(P::released_it(it)));
      if (kt == model.k_tiles(item) - 1) {  // item tail: wait_group<0>, release the rest, epilogue
        while (!c.inflight.empty()) retire(c);
        for (int r = P::released_it(it) + 1; r <= it; ++r)
          if (r >= c.it0) release(P::stage(r));
        model.epilogue(w, item, c.d);
      }
    } else if (act.first == 2) {
      cons[act.second].done = true;
    } else if (act.first == 3) {  // a TMA box lands
      const TmaJob job = tma_jobs[act.second];
      tma_jobs.erase(tma_jobs.begin() + act.second);
      ok &= full[job.stage].complete_tx(land_tma_box(smem, job.dst, *job.g, job.base, job.c0, job.c1));
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

}  // namespace emulate_sm90
}  // namespace cnnkern
