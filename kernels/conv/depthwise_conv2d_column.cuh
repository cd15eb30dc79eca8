// Depthwise 3x3 gather by column walk (plan: dw_plan_column in depthwise_conv2d_params.cuh; design and
// predictions: kernels/conv/depthwise_conv2d.md, section 7).
//
// Channels-last rows with dense pixels are flat runs of W*C elements. A thread owns E = kDwColumnElems
// consecutive elements e0 .. e0+E-1 of an output row, as NA = E / VA accesses of VA elements (VA divides C,
// so an access never straddles a pixel: one column mask per access and tap). Output element e = ox*C + c
// reads source element (ox*KS - pw + kw)*C + c under tap kw: per access and tap a fixed in-row offset,
// computed once. Its 3 x 3 x E weights and E biases stay in registers (read once from the block's staged
// copy of all C filters in shared memory).
//
// The thread then walks down the block's rb output rows source row by source row: source row t (relative
// to the chunk's first one) feeds output row o through filter row kh = t - o*KS. The accumulators of the
// R = ceil(KT / KS) output rows that a source row can feed form a ring (slot o % R); output row o is
// complete after source row o*KS + KT - 1, is stored, and its slot restarts from the bias for row o + R.
// Each source row is loaded and unpacked once per chunk (a 3x3 stride-1 window per output row: 3 x NA
// loads and 3E unpacks instead of 9 x NA and 9E). The loop over source rows is unrolled by the ring's
// period P = R * KS, so every slot index is a compile-time constant (registers, no local memory); the
// next row's loads are issued before the current row's FMAs.
//
// Taps outside the source are loaded from clamped addresses and zeroed by ANDing the raw words with the
// column's and the row's masks: a tap outside the image contributes exactly 0 even if the clamped location
// holds Inf or NaN (as in the direct kernel). After the block stages the filters in shared memory (one
// barrier) the threads are independent.
#pragma once

#include "conv/depthwise_conv2d_common.cuh"

namespace cnnkern {

template <class T, int VA, int KS, EpiKind kEpi = EpiKind::kPlain>
struct DwColumnThread {
  static constexpr int KT = 3;
  static constexpr int E = kDwColumnElems;
  static constexpr int NA = E / VA;
  static constexpr int R = (KT + KS - 1) / KS;  // ring of accumulator rows
  static constexpr int P = R * KS;              // unroll period: source rows per ring turn
  static_assert(E % VA == 0 && (KS == 1 || KS == 2), "column walk: VA divides E, stride 1 or 2");
  static_assert(kEpi != EpiKind::kStats, "column walk: no statistics epilogue (the direct kernel has it)");

  int n_ = 0, oy0_ = 0, rows_ = 0, e0_ = 0;
  bool ok_ = false;
  bool aok_[NA];            // access inside the output row
  uint32_t boff_[NA][KT];   // byte offset of tap kw's (clamped) source column in a row (< 2^31: host checked)
  uint32_t cm_[NA][KT];     // tap kw's column inside the source: all ones, else 0 (ANDed into the raw words)
  const char* nrow_ = nullptr;  // the next source row to load (clamped into the image) and its index
  int nsy_ = 0;
  T* orow_ = nullptr;           // the next output row to store
  float w_[KT][KT][E];  // w_[kh][kw][element]
  float bias_[E];       // the slot's starting value: bias, or 0 with kAct (folded into the shift)
  ChannelAffine::At aff_[kEpi == EpiKind::kAct ? E : 1];

  // Modulo with a non-negative result for compile-time ring arithmetic.
  static constexpr int mod(int a, int m) { return ((a % m) + m) % m; }

  // Block-wide, before init: every channel's filter (flip applied) as [tap][C] floats, then the C biases
  // (dw_column_smem_floats). A block's threads hold elements of every channel of a row, and a thread's 36
  // weights gathered from global memory one by one cost ~1,000 SASS instructions of address math and
  // branches per thread (as much as its whole row walk at rb = 14); from here they are 9 or 18 shared loads.
  CNNKERN_HD static void stage(const DwColumnParams<T>& p, float* smem, int tid) {
    const DwGather<T>& g = p.g;
    const int c_all = g.out_c;
    for (int e = tid; e < KT * KT * c_all; e += p.threads) {
      uint32_t tap, c;
      p.c_div.divmod(static_cast<uint32_t>(e), tap, c);
      smem[e] = dw_weight(g, static_cast<int>(c), static_cast<int>(tap) / KT, static_cast<int>(tap) % KT);
    }
    for (int c = tid; c < c_all; c += p.threads)
      smem[KT * KT * c_all + c] = g.bias != nullptr ? Num<T>::to_float(g.bias[c * g.bias_stride]) : 0.0f;
  }

  CNNKERN_HD void init(const DwColumnParams<T>& p, unsigned bx, int tid, const float* smem) {
    const DwGather<T>& g = p.g;
    uint32_t rest, cb, n, rc;
    p.cbk_div.divmod(bx, rest, cb);
    p.rchunks_div.divmod(rest, n, rc);
    n_ = static_cast<int>(n);
    oy0_ = static_cast<int>(rc) * p.rb;
    rows_ = g.out_h - oy0_ < p.rb ? g.out_h - oy0_ : p.rb;
    e0_ = (static_cast<int>(cb) * p.threads + tid) * E;
    ok_ = e0_ < p.lo && rows_ > 0;
#pragma unroll
    for (int a = 0; a < NA; ++a) {
      const int e = e0_ + a * VA;
      aok_[a] = e < p.lo;
      uint32_t ox, c;
      p.c_div.divmod(static_cast<uint32_t>(aok_[a] ? e : 0), ox, c);  // c % VA == 0: VA divides C
      const int ix0 = static_cast<int>(ox) * KS - g.pw;
#pragma unroll
      for (int kw = 0; kw < KT; ++kw) {
        cm_[a][kw] = dw_in(ix0 + kw, g.src_w) ? ~0u : 0u;
        boff_[a][kw] = static_cast<uint32_t>(dw_clamp(ix0 + kw, g.src_w) * g.out_c + static_cast<int>(c)) *
                       static_cast<uint32_t>(sizeof(T));
      }
      // VA consecutive channels: one VA-float shared load per tap (aligned: C and c are multiples of VA).
#pragma unroll
      for (int tap = 0; tap < KT * KT; ++tap) {
        float wv[VA];
        dw_load_smem<VA>(smem + tap * g.out_c + static_cast<int>(c), wv);
#pragma unroll
        for (int l = 0; l < VA; ++l) w_[tap / KT][tap % KT][a * VA + l] = wv[l];
      }
      float bv[VA];
      dw_load_smem<VA>(smem + KT * KT * g.out_c + static_cast<int>(c), bv);
#pragma unroll
      for (int l = 0; l < VA; ++l) {
        const int i = a * VA + l;
        bias_[i] = bv[l];
        if constexpr (kEpi == EpiKind::kAct) {
          // act((acc + bias) * scale + shift) as act(acc * scale + (bias * scale + shift)): the slot starts at 0.
          aff_[i] = g.aff.template at<T>(static_cast<int>(c) + l);
          aff_[i].shift += bias_[i] * aff_[i].scale;
          bias_[i] = 0.0f;
        }
      }
    }
  }

  // The NA x KT accesses of the next source row (clamped into the image: always in bounds), then the pointer
  // moves to the row after it (unless clamped); returns the row's validity as a word mask. Per access one
  // unsigned 32-bit byte offset from the row pointer (a signed element offset cost a sign extension and four
  // 64-bit address instructions per access; 64-bit column pointers spilled; a row pointer recomputed per
  // row cost ~10 instructions: SASS and ptxas checked, depthwise_conv2d.md section 7).
  CNNKERN_HD uint32_t load_next(const DwGather<T>& g, Vec<T, VA> (&raw)[NA][KT]) {
#pragma unroll
    for (int a = 0; a < NA; ++a)
#pragma unroll
      for (int kw = 0; kw < KT; ++kw) raw[a][kw] = dw_load_vec<T, VA>(reinterpret_cast<const T*>(nrow_ + boff_[a][kw]));
    const uint32_t rm = dw_in(nsy_, g.src_h) ? ~0u : 0u;
    if (nsy_ >= 0 && nsy_ < g.src_h - 1) nrow_ += g.ss.h * static_cast<int64_t>(sizeof(T));
    ++nsy_;
    return rm;
  }

  // The raw words of v ANDed with m: a tap outside the source contributes exactly 0 even if the clamped
  // location holds Inf or NaN (one LOP3 per word with the column and row masks; VA * sizeof(T) >= 4).
  static CNNKERN_HD Vec<T, VA> and_words(const Vec<T, VA>& v, uint32_t m) {
    constexpr int kWords = VA * static_cast<int>(sizeof(T)) / 4;
    static_assert(kWords * 4 == VA * static_cast<int>(sizeof(T)), "whole words");
    uint32_t w[kWords];
    std::memcpy(w, &v, sizeof(w));
#pragma unroll
    for (int i = 0; i < kWords; ++i) w[i] &= m;
    Vec<T, VA> r;
    std::memcpy(&r, w, sizeof(w));
    return r;
  }

  // The completed output row at orow_, which then moves down one row.
  CNNKERN_HD void store_next(const DwGather<T>& g, const float (&acc)[E]) {
#pragma unroll
    for (int a = 0; a < NA; ++a) {
      if (!aok_[a]) continue;
      Vec<T, VA> v;
#pragma unroll
      for (int l = 0; l < VA; ++l) {
        float o = acc[a * VA + l];
        if constexpr (kEpi == EpiKind::kAct) o = g.aff.apply_at(aff_[a * VA + l], o);
        v.v[l] = Num<T>::from_float(o);
      }
      *reinterpret_cast<Vec<T, VA>*>(orow_ + a * VA) = v;
    }
    orow_ += g.os.h;
  }

  // Source row t = base + I of the chunk (base a multiple of P): its FMAs into the ring, then the output row
  // that it completes. `raw` holds row t; the loads of row t + 1 are issued into `next` first.
  template <int I>
  CNNKERN_HD void step(const DwGather<T>& g, int base, Vec<T, VA> (&raw)[NA][KT], uint32_t& rm,
                       float (&acc)[R][E]) {
    const int t = base + I;
    Vec<T, VA> next[NA][KT];
    const uint32_t nrm = load_next(g, next);  // one row past the last: clamped, unused
    float x[KT][E];
#pragma unroll
    for (int a = 0; a < NA; ++a)
#pragma unroll
      for (int kw = 0; kw < KT; ++kw) {
        float xv[VA];
        dw_unpack_or_zero(and_words(raw[a][kw], cm_[a][kw] & rm), true, xv);
#pragma unroll
        for (int l = 0; l < VA; ++l) x[kw][a * VA + l] = xv[l];
      }
    // Filter row kh feeds output row o = (t - kh) / KS when KS divides t - kh; base / KS is a multiple of
    // R, so its slot is ((I - kh) / KS) mod R.
#pragma unroll
    for (int kh = 0; kh < KT; ++kh) {
      if (mod(I - kh, KS) != 0) continue;
      const int slot = mod((I - kh) / KS, R);
#pragma unroll
      for (int kw = 0; kw < KT; ++kw)
#pragma unroll
        for (int i = 0; i < E; ++i) acc[slot][i] += w_[kh][kw][i] * x[kw][i];
    }
    // Output row o is complete after source row o*KS + KT - 1.
    if constexpr (mod(I - (KT - 1), KS) == 0) {
      constexpr int kSlot = mod((I - (KT - 1)) / KS, R);
      if (t >= KT - 1) store_next(g, acc[kSlot]);  // else a warm-up slot (an output row before the chunk)
#pragma unroll
      for (int i = 0; i < E; ++i) acc[kSlot][i] = bias_[i];
    }
#pragma unroll
    for (int a = 0; a < NA; ++a)
#pragma unroll
      for (int kw = 0; kw < KT; ++kw) raw[a][kw] = next[a][kw];
    rm = nrm;
  }

  CNNKERN_HD void run(const DwColumnParams<T>& p) {
    if (!ok_) return;
    const DwGather<T>& g = p.g;
    // Source rows sy0 + t for t < steps feed the chunk's rows_ output rows; the last step completes the last
    // output row ((steps - KT) / KS = rows_ - 1), so every store is inside the chunk.
    const int sy0 = oy0_ * KS - g.ph;
    const int steps = (rows_ - 1) * KS + KT;
    nsy_ = sy0;
    nrow_ = reinterpret_cast<const char*>(g.src + int64_t{n_} * g.ss.n + int64_t{dw_clamp(sy0, g.src_h)} * g.ss.h);
    orow_ = g.out + int64_t{n_} * g.os.n + int64_t{oy0_} * g.os.h + e0_;
    float acc[R][E];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < E; ++i) acc[r][i] = bias_[i];
    Vec<T, VA> raw[NA][KT];
    uint32_t rm = load_next(g, raw);
#pragma unroll 1
    for (int base = 0; base < steps; base += P) {
      step<0>(g, base, raw, rm, acc);
      if (base + 1 >= steps) break;
      step<1>(g, base, raw, rm, acc);
      if (base + 2 >= steps) break;
      step<2>(g, base, raw, rm, acc);
      if constexpr (P > 3) {
        if (base + 3 >= steps) break;
        step<3>(g, base, raw, rm, acc);
      }
    }
  }
};

#if defined(__CUDACC__)
// Two blocks of up to 256 threads per SM (<= 128 registers): weights (36 floats), the ring (8-12) and two
// source rows' raw words stay in registers.
template <class T, int VA, int KS, EpiKind kEpi = EpiKind::kPlain>
__global__ void __launch_bounds__(kDwThreads, 2) dw_column_kernel(const DwColumnParams<T> p) {
  float* smem = dw_dynamic_smem();
  using Thread = DwColumnThread<T, VA, KS, kEpi>;
  Thread::stage(p, smem, threadIdx.x);
  __syncthreads();
  Thread th;
  th.init(p, blockIdx.x, threadIdx.x, smem);
  th.run(p);
}
#endif

}  // namespace cnnkern
