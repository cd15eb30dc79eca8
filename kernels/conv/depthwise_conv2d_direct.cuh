// Depthwise gather without input staging: a thread owns V consecutive output channels (one 16-byte
// vector for channels-last tensors, V == 1 otherwise) of RP output pixels of one row, and loops over the
// taps reading the source straight from global memory (neighbouring threads and taps hit L1). The
// block's filters sit transposed in shared memory, [j][tap][channel], so a thread reads its V weights
// of a tap as float4s.
//
// Thread t of block b: channel vector cb*tc + t % tc, pixel groups pb*tp*gpt + i*tp + t / tc (i < gpt),
// with cb = b % cblocks fastest so that neighbouring blocks share pixels (channels-last: one line).
// Forward form: the group's pixels are x0 .. x0+RP-1. With KT > 0 (KT x KT filter, unit dilation, stride
// KS = 1 or 2 along both axes) a filter row's NC = (RP-1)*KS + KT source columns are loaded once for all
// RP outputs. The loads of a batch of filter rows (up to ~60 registers of raw data) are issued back to
// back from addresses clamped into the source, and the taps outside it are zeroed with a select
// afterwards: a thread keeps 6-27 loads in flight instead of one per branch (the old `if (!in) continue`
// around each load made every load wait for the previous one's FMAs). The runtime-tap path (KT == 0)
// does the same for the RP columns of one tap.
// Row pairs (RH = 2, the stride-1 windows on 16-byte vectors, chosen by the host: dw_direct_rows): a group
// is RH output rows x RP pixels; its KT + 1 source rows are loaded once and each feeds both output rows
// (kernels/conv/depthwise_conv2d.md, 4c).
// Residue form (kRes, input-grad with stride > 1): the group's pixels x0 + r*sw share their residue
// mod sw, hence the set of contributing taps, and read consecutive source columns.
//
// MI: channel multiplier folded into a vector (output lane l reads source lane l / MI); the host uses
// V > 1 only with MI == m for the forward op and MI == m == 1 for the input-grad.
//
// Forward epilogues (kEpi): kAct applies act(... * scale + shift) before the store; kStats also emits, per
// pixel block (the set of pixel groups of blockIdx.x / cblocks) and channel, (count, mean, M2) of the stored
// values: pass 1 sums them while storing, pass 2 re-reads the thread's own stores (same thread, so they are
// visible; the values are too many for registers) for the squared deviations from the block's mean; both
// reduce over the block's pixel threads in shared memory after the staged weights.
//
// Phases: init; stage(); barrier; run(); with kStats then stats_put_sums(); [barrier; stats_tree(s)] for
// s = tree_first_step(tp) .. 1; barrier; stats_center(); barrier; stats_put_m2(); [barrier; stats_tree(s)]...;
// barrier; stats_store().
#pragma once

#include "conv/depthwise_conv2d_common.cuh"

namespace cnnkern {

template <class T, int V, int MI, int KT, bool kRes, EpiKind kEpi = EpiKind::kPlain, int KS = 1, int RH = 1>
struct DwDirectBlock {
  static constexpr int RP = dw_direct_rp(V * static_cast<int>(sizeof(T)));
  static_assert(KS == 1 || (KS == 2 && KT > 0), "stride specialisation only with a window");
  // RH output rows per pixel group (y0 = 2 * row pair): only the stride-1 window (the host plans row pairs,
  // DwDirectParams::rh); each of the KT + RH - 1 source rows loaded serves up to RH output rows.
  static_assert(RH == 1 || (RH == 2 && KT > 0 && KS == 1 && !kRes), "row pairs only with a stride-1 window");
  static_assert(RH == 1 || KT <= 3 || RH == 2, "the 5x5 / 7x7 row-pair loop is written for two rows");
  static constexpr int VI = V / MI;
  static constexpr bool kStats = kEpi == EpiKind::kStats;
  static_assert(V % MI == 0, "multiplier must divide the vector");
  static_assert(KT == 0 || !kRes, "residue form has no window specialisation");
  static_assert(kEpi == EpiKind::kPlain || !kRes, "epilogues are forward-only");

  int tid_, tc_, tp_, cv_, oc0_, oc_base_;
  unsigned pb_;
  bool ok_;
  // Statistics: per-lane sums of the stored values (pass 1), then of their squared deviations (pass 2),
  // the thread's count of valid pixels, and the block means of its lanes.
  float ssum_[kStats ? V : 1];
  float scount_ = 0.0f;
  float smean_[kStats ? V : 1];

  CNNKERN_HD void init(const DwDirectParams<T>& p, unsigned bx, int tid) {
    tid_ = tid;
    tc_ = tid % p.tc;
    tp_ = tid / p.tc;
    uint32_t pb, cb;
    p.cblocks_div.divmod(bx, pb, cb);
    oc_base_ = static_cast<int>(cb) * p.tc * V;
    cv_ = static_cast<int>(cb) * p.tc + tc_;
    ok_ = tp_ < p.tp && cv_ < p.cvecs;
    oc0_ = cv_ * V;
    pb_ = pb;
    scount_ = 0.0f;
#pragma unroll
    for (int l = 0; l < (kStats ? V : 1); ++l) ssum_[l] = smean_[l] = 0.0f;
  }

  CNNKERN_HD void stage(const DwDirectParams<T>& p, float* smem) const {
    if (!p.w_smem) return;
    const DwGather<T>& g = p.g;
    const int taps = g.kh * g.kw;
    const int cbw = p.tc * V;
    const int total = g.nsrc * taps * cbw;
    // Tap-fastest walk: consecutive threads read consecutive weights of one channel.
    for (int e = tid_; e < total; e += p.threads) {
      uint32_t rest, t, j, cl, kh, kw;
      p.taps_div.divmod(static_cast<uint32_t>(e), rest, t);
      p.cbw_div.divmod(rest, j, cl);
      p.kw_div.divmod(t, kh, kw);
      const int oc = oc_base_ + static_cast<int>(cl);
      const int jj = static_cast<int>(j);
      smem[(jj * taps + static_cast<int>(t)) * cbw + static_cast<int>(cl)] =
          oc < g.out_c ? dw_weight(g, oc * g.ch_mul + jj, static_cast<int>(kh), static_cast<int>(kw)) : 0.0f;
    }
  }

  CNNKERN_HD void weights(const DwDirectParams<T>& p, const float* smem, int j, int kh, int kw,
                          float (&wv)[V]) const {
    const DwGather<T>& g = p.g;
    if (p.w_smem) {
      dw_load_smem<V>(smem + ((j * g.kh * g.kw + kh * g.kw + kw) * p.tc + tc_) * V, wv);
    } else {
#pragma unroll
      for (int l = 0; l < V; ++l) wv[l] = dw_weight(g, (oc0_ + l) * g.ch_mul + j, kh, kw);
    }
  }

  CNNKERN_HD void fma(float (&acc)[V], const float (&wv)[V], const float (&sv)[VI]) const {
#pragma unroll
    for (int l = 0; l < V; ++l) acc[l] += wv[l] * sv[l / MI];
  }

  CNNKERN_HD void run(const DwDirectParams<T>& p, const float* smem) {
    if (!ok_) return;
    const DwGather<T>& g = p.g;
    float bias[V];
#pragma unroll
    for (int l = 0; l < V; ++l) bias[l] = g.bias != nullptr ? Num<T>::to_float(g.bias[(oc0_ + l) * g.bias_stride]) : 0.0f;
    // kAct: (acc + bias) * scale + shift as acc * scale + (bias * scale + shift), so that only two values
    // per lane stay live over the gather (the fp32 rounding differs by an ulp at most).
    ChannelAffine::At aff[kEpi == EpiKind::kAct ? V : 1];
    if constexpr (kEpi == EpiKind::kAct) {
#pragma unroll
      for (int l = 0; l < V; ++l) {
        aff[l] = g.aff.template at<T>(oc0_ + l);
        aff[l].shift += bias[l] * aff[l].scale;
        bias[l] = 0.0f;
      }
    }
    const int first = static_cast<int>(pb_) * p.tp * p.gpt + tp_;
    for (int i = 0; i < p.gpt; ++i) {
      const int gi = first + i * p.tp;
      if (gi >= p.groups) break;
      uint32_t rest, xi, n, y;
      p.xg_div.divmod(static_cast<uint32_t>(gi), rest, xi);
      p.oh_div.divmod(rest, n, y);
      y *= RH;  // first of the group's RH output rows (oh_div divides by ceil(out_h / RH))
      int x0, xstep;
      if constexpr (kRes) {
        uint32_t chunk, rho;
        p.sw_div.divmod(xi, chunk, rho);
        x0 = static_cast<int>(rho + chunk * RP * g.sw);
        xstep = g.sw;
      } else {
        x0 = static_cast<int>(xi) * RP;
        xstep = 1;
      }
      float acc[RH][RP][V];
#pragma unroll
      for (int h = 0; h < RH; ++h)
#pragma unroll
        for (int r = 0; r < RP; ++r)
#pragma unroll
          for (int l = 0; l < V; ++l) acc[h][r][l] = 0.0f;
      for (int j = 0; j < g.nsrc; ++j) {
        const int ci = static_cast<int>(p.ch_div.div(static_cast<uint32_t>(oc0_ * g.ch_mul + j)));
        const T* src = g.src + static_cast<int>(n) * g.ss.n + ci * g.ss.c;
        if constexpr (RH > 1) {
          gather_window_rows(p, smem, j, src, static_cast<int>(y), x0, acc);
        } else if constexpr (kRes) {
          gather_residue(p, smem, j, src, static_cast<int>(y), x0, acc[0]);
        } else if constexpr (KT > 0) {
          gather_window(p, smem, j, src, static_cast<int>(y), x0, acc[0]);
        } else {
          gather_forward(p, smem, j, src, static_cast<int>(y), x0, acc[0]);
        }
      }
#pragma unroll
      for (int h = 0; h < RH; ++h) {
        if (h > 0 && static_cast<int>(y) + h >= g.out_h) break;
        T* out = g.out + static_cast<int>(n) * g.os.n + oc0_ * g.os.c + (static_cast<int>(y) + h) * g.os.h;
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          const int x = x0 + r * xstep;
          if (x >= g.out_w) break;
          Vec<T, V> v;
#pragma unroll
          for (int l = 0; l < V; ++l) {
            float o = acc[h][r][l] + bias[l];
            if constexpr (kEpi == EpiKind::kAct) o = g.aff.apply_at(aff[l], o);
            v.v[l] = Num<T>::from_float(o);
            if constexpr (kStats) ssum_[l] += Num<T>::to_float(v.v[l]);
          }
          if constexpr (kStats) scount_ += 1.0f;
          if constexpr (V > 1) {
            *reinterpret_cast<Vec<T, V>*>(out + x * g.os.w) = v;
          } else {
            out[x * g.os.w] = v.v[0];
          }
        }
      }
    }
  }

  // ---- statistics epilogue (kStats). Buffer slot k (lanes 0..V-1, then the count) of thread tid at
  // buf[k * threads + tid]; the tree runs over the pixel threads tp_ of each channel thread tc_.
  CNNKERN_HD void stats_put_sums(const DwDirectParams<T>& p, float* buf) const {
#pragma unroll
    for (int l = 0; l < V; ++l) buf[l * p.threads + tid_] = ssum_[l];
    buf[V * p.threads + tid_] = scount_;
  }

  CNNKERN_HD void stats_tree(const DwDirectParams<T>& p, float* buf, int s, int slots) const {
    if (tp_ >= s || tp_ + s >= p.tp) return;
    for (int k = 0; k < slots; ++k) buf[k * p.threads + tid_] += buf[k * p.threads + tid_ + s * p.tc];
  }

  // Means from the tree's row 0 (thread tc_), then pass 2 over the thread's own stored outputs.
  CNNKERN_HD void stats_center(const DwDirectParams<T>& p, const float* buf) {
    const float count = buf[V * p.threads + tc_];
#pragma unroll
    for (int l = 0; l < V; ++l) {
      smean_[l] = buf[l * p.threads + tc_] / count;
      ssum_[l] = 0.0f;
    }
    if (!ok_) return;
    const DwGather<T>& g = p.g;
    const int first = static_cast<int>(pb_) * p.tp * p.gpt + tp_;
    for (int i = 0; i < p.gpt; ++i) {
      const int gi = first + i * p.tp;
      if (gi >= p.groups) break;
      uint32_t rest, xi, n, y;
      p.xg_div.divmod(static_cast<uint32_t>(gi), rest, xi);
      p.oh_div.divmod(rest, n, y);
      y *= RH;
      const int x0 = static_cast<int>(xi) * RP;
#pragma unroll
      for (int h = 0; h < RH; ++h) {
        if (h > 0 && static_cast<int>(y) + h >= g.out_h) break;
        const T* out = g.out + static_cast<int>(n) * g.os.n + oc0_ * g.os.c + (static_cast<int>(y) + h) * g.os.h;
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          const int x = x0 + r;
          if (x >= g.out_w) break;
          float sv[V];
          load_as_float<T, V>(out + x * g.os.w, sv);
#pragma unroll
          for (int l = 0; l < V; ++l) {
            const float d = sv[l] - smean_[l];
            ssum_[l] += d * d;
          }
        }
      }
    }
  }

  CNNKERN_HD void stats_put_m2(const DwDirectParams<T>& p, float* buf) const {
#pragma unroll
    for (int l = 0; l < V; ++l) buf[l * p.threads + tid_] = ssum_[l];
  }

  CNNKERN_HD void stats_store(const DwDirectParams<T>& p, const float* buf) const {
    if (tp_ != 0 || !ok_) return;
    const float count = buf[V * p.threads + tc_];  // not overwritten by pass 2
#pragma unroll
    for (int l = 0; l < V; ++l) p.g.stats.put(static_cast<int>(pb_), oc0_ + l, count, smean_[l], buf[l * p.threads + tc_]);
  }

  CNNKERN_HD void gather_forward(const DwDirectParams<T>& p, const float* smem, int j, const T* src, int y, int x0,
                                 float (&acc)[RP][V]) const {
    const DwGather<T>& g = p.g;
    if (g.src_w <= 0) return;  // no column to clamp to (and nothing to add)
    for (int kh = 0; kh < g.kh; ++kh) {
      const int sy = y * g.sh - g.ph + kh * g.dh;
      if (!dw_in(sy, g.src_h)) continue;
      const T* srow = src + sy * g.ss.h;
      for (int kw = 0; kw < g.kw; ++kw) {
        float wv[V];
        weights(p, smem, j, kh, kw, wv);
        const int sx0 = x0 * g.sw - g.pw + kw * g.dw;
        // The RP loads first (clamped: always in bounds), then the FMAs on the zero-selected values.
        Vec<T, VI> raw[RP];
        bool ok[RP];
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          const int sx = sx0 + r * g.sw;
          ok[r] = dw_in(sx, g.src_w);
          raw[r] = dw_load_vec<T, VI>(srow + dw_clamp(sx, g.src_w) * g.ss.w);
        }
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          float sv[VI];
          dw_unpack_or_zero(raw[r], ok[r], sv);
          fma(acc[r], wv, sv);
        }
      }
    }
  }

  // KT x KT filter, unit dilation, stride KS: source column u = r*KS + kw feeds output r through tap kw.
  // Filter rows are taken KB at a time: all KB*NC loads of a batch, then their FMAs. Each tap's V weights
  // are read from shared memory once and used for the RP outputs.
  static constexpr int NC = (RP - 1) * KS + (KT > 0 ? KT : 1);
  static constexpr int kRawRegs = (VI * static_cast<int>(sizeof(T)) + 3) / 4;  // registers of one load
  // Tap-outer order (each tap's weights read once) while a row's columns fit in 32 floats; else
  // column-outer (one column unpacked at a time: 7x7, and the 9 columns of a stride-2 row of 4 fp32
  // or 8 16-bit channels, spilled with the epilogues). Filters above 3x3 take one row per batch
  // (NC = 6..13 loads in flight).
  static constexpr bool kTapOuter = KT <= 3 && NC * VI <= 32;
  static constexpr int KB0 = KT <= 3 ? 60 / (NC * kRawRegs) : 1;
  static constexpr int KB = KB0 < 1 ? 1 : (KB0 > KT ? (KT > 0 ? KT : 1) : KB0);

  CNNKERN_HD void gather_window(const DwDirectParams<T>& p, const float* smem, int j, const T* src, int y, int x0,
                                float (&acc)[RP][V]) const {
    const DwGather<T>& g = p.g;
    const float* wj = smem + (j * KT * KT * p.tc + tc_) * V;
    // Clamped column offsets and their validity, shared by every filter row (the host guarantees
    // src_h, src_w >= 1 for this path: dw_direct_window).
    int cx[NC];  // int32: dw_direct_window checked (src_w - 1) * ss.w < 2^31
    bool cok[NC];
    const int sxb = x0 * KS - g.pw;
#pragma unroll
    for (int u = 0; u < NC; ++u) {
      cok[u] = dw_in(sxb + u, g.src_w);
      cx[u] = dw_clamp(sxb + u, g.src_w) * static_cast<int>(g.ss.w);
    }
    const int syb = y * KS - g.ph;
    if constexpr (KT <= 3) {
#pragma unroll
      for (int kb = 0; kb < KT; kb += KB) window_rows(p, wj, src, syb, kb, cx, cok, acc);
    } else {
      // Not unrolled: unrolled, ptxas hoists the loads of later rows as well and spills.
#pragma unroll 1
      for (int kb = 0; kb < KT; kb += KB) window_rows(p, wj, src, syb, kb, cx, cok, acc);
    }
  }

  // The NC column vectors of source row sy (clamped into the image, so the loads stay in bounds and may all
  // be issued before any is used); returns whether the row is inside the image (taps outside read as zero).
  CNNKERN_HD bool load_source_row(const DwGather<T>& g, const T* src, int sy, const int (&cx)[NC],
                                  Vec<T, VI> (&raw)[NC]) const {
    const bool inside = dw_in(sy, g.src_h);
    const T* srow = src + dw_clamp(sy, g.src_h) * g.ss.h;
#pragma unroll
    for (int u = 0; u < NC; ++u) raw[u] = dw_load_vec<T, VI>(srow + cx[u]);
    return inside;
  }

  // Filter rows kb .. kb+KB-1 of the window: their loads, then their FMAs.
  CNNKERN_HD void window_rows(const DwDirectParams<T>& p, const float* wj, const T* src, int syb, int kb,
                              const int (&cx)[NC], const bool (&cok)[NC], float (&acc)[RP][V]) const {
    const DwGather<T>& g = p.g;
    Vec<T, VI> raw[KB][NC];
    bool rok[KB];
#pragma unroll
    for (int b = 0; b < KB; ++b) {
      if (kb + b >= KT) break;
      rok[b] = load_source_row(g, src, syb + kb + b, cx, raw[b]);
    }
#pragma unroll
    for (int b = 0; b < KB; ++b) {
      const int kh = kb + b;
      if (kh >= KT) break;
      if constexpr (kTapOuter) {
        // Tap-outer: the row's columns as floats (NC*VI registers), each tap's weights read once.
        float sv[NC][VI];
#pragma unroll
        for (int u = 0; u < NC; ++u) dw_unpack_or_zero(raw[b][u], rok[b] && cok[u], sv[u]);
#pragma unroll
        for (int kw = 0; kw < KT; ++kw) {
          float wv[V];
          dw_load_smem<V>(wj + (kh * KT + kw) * p.tc * V, wv);
#pragma unroll
          for (int r = 0; r < RP; ++r) fma(acc[r], wv, sv[r * KS + kw]);
        }
      } else {
        // Column-outer: one column as floats at a time; the weights of a tap are read once per output it
        // feeds.
#pragma unroll
        for (int u = 0; u < NC; ++u) {
          float sv[VI];
          dw_unpack_or_zero(raw[b][u], rok[b] && cok[u], sv);
#pragma unroll
          for (int r = 0; r < RP; ++r) {
            const int kw = u - r * KS;
            if (kw < 0 || kw >= KT) continue;
            float wv[V];
            dw_load_smem<V>(wj + (kh * KT + kw) * p.tc * V, wv);
            fma(acc[r], wv, sv);
          }
        }
      }
    }
  }

  // Row pairs (RH == 2, stride 1): the NR = KT + RH - 1 source rows of the group's RH output rows, KBR
  // rows per batch (all KBR * NC loads, then their FMAs). Source row b feeds output row h through filter
  // row kh = b - h; each row is unpacked once (tap-outer) and serves both output rows, so a 3x3 window
  // over 2 x RP outputs loads 4 x NC vectors instead of 2 x 3 x NC.
  static constexpr int NR = (KT > 0 ? KT : 1) + RH - 1;
  // bf16 row pairs: a zeroed tap costs no select. With m = column mask & row mask (0xffff0000 or 0), the
  // high element of a word is w & m (one LOP3 of three inputs) and the low one w * (m & 0x10000) (one IMAD;
  // w << 16 or 0): 2 instructions per word plus one per vector, instead of select + 2 unpacks (3 per word).
  // The masks go through an empty asm so that the compiler cannot turn them back into selects. Not with
  // the statistics epilogue: there ptxas spilled the statistics sums inside the group loop (148 bytes).
  static constexpr bool kMasked = std::is_same_v<T, __nv_bfloat16> && kEpi != EpiKind::kStats &&
                                  (VI * static_cast<int>(sizeof(T))) % 4 == 0;

  static CNNKERN_HD uint32_t opaque_mask(bool ok) {
    uint32_t m = ok ? 0xffff0000u : 0u;
#if defined(__CUDA_ARCH__)
    asm("mov.b32 %0, %0;" : "+r"(m));
#endif
    return m;
  }

  static CNNKERN_HD void unpack_masked(const Vec<T, VI>& v, uint32_t cm, uint32_t rm, float (&out)[VI]) {
    constexpr int kWords = VI * static_cast<int>(sizeof(T)) / 4;
    uint32_t w[kWords];
    std::memcpy(w, &v, sizeof(w));
    const uint32_t k = cm & rm & 0x10000u;
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      const uint32_t lo = w[i] * k, hi = w[i] & cm & rm;
      std::memcpy(&out[2 * i], &lo, 4);
      std::memcpy(&out[2 * i + 1], &hi, 4);
    }
  }
  static constexpr int KBR = 2;

  CNNKERN_HD void gather_window_rows(const DwDirectParams<T>& p, const float* smem, int j, const T* src, int y,
                                     int x0, float (&acc)[RH][RP][V]) const {
    const DwGather<T>& g = p.g;
    const float* wj = smem + (j * KT * KT * p.tc + tc_) * V;
    int cx[NC];
    bool cok[NC];
    const int sxb = x0 * KS - g.pw;
#pragma unroll
    for (int u = 0; u < NC; ++u) {
      cok[u] = dw_in(sxb + u, g.src_w);
      cx[u] = dw_clamp(sxb + u, g.src_w) * static_cast<int>(g.ss.w);
    }
    uint32_t cm[NC];  // bf16: column validity as a word mask (see unpack_masked)
#pragma unroll
    for (int u = 0; u < NC; ++u) cm[u] = opaque_mask(cok[u]);
    const int syb = y - g.ph;
    if constexpr (KT > 3) {
      // 5x5 / 7x7: one source row at a time (not unrolled: unrolled, ptxas hoists later rows' loads and
      // spills); source row b feeds output row 0 through filter row b and output row 1 through b - 1. The
      // first and last source rows feed one output row each (peeled: no branch per tap in the loop).
      window_source_row<true, false>(p, wj, src, syb, 0, cx, cok, cm, acc);
#pragma unroll 1
      for (int b = 1; b < KT; ++b) window_source_row<true, true>(p, wj, src, syb, b, cx, cok, cm, acc);
      window_source_row<false, true>(p, wj, src, syb, KT, cx, cok, cm, acc);
      return;
    }
#pragma unroll
    for (int bb = 0; bb < NR; bb += KBR) {
      Vec<T, VI> raw[KBR][NC];
      bool rok[KBR];
#pragma unroll
      for (int b = 0; b < KBR; ++b) {
        if (bb + b >= NR) break;
        rok[b] = load_source_row(g, src, syb + bb + b, cx, raw[b]);
      }
#pragma unroll
      for (int b = 0; b < KBR; ++b) {
        const int row = bb + b;
        if (row >= NR) break;
        // kw-outer: tap kw reads columns kw .. kw + RP - 1, so a column is unpacked just before its first use
        // and dies after its last (RP columns live, not NC); each tap's weights serve both output rows' RP
        // outputs.
        float sv[NC][VI];
#pragma unroll
        for (int kw = 0; kw < KT; ++kw) {
#pragma unroll
          for (int u = kw == 0 ? 0 : kw + RP - 1; u < kw + RP; ++u) {
            if constexpr (kMasked) {
              unpack_masked(raw[b][u], cm[u], opaque_mask(rok[b]), sv[u]);
            } else {
              dw_unpack_or_zero(raw[b][u], rok[b] && cok[u], sv[u]);
            }
          }
#pragma unroll
          for (int h = 0; h < RH; ++h) {
            const int kh = row - h;
            if (kh < 0 || kh >= KT) continue;
            float wv[V];
            dw_load_smem<V>(wj + (kh * KT + kw) * p.tc * V, wv);
#pragma unroll
            for (int r = 0; r < RP; ++r) fma(acc[h][r], wv, sv[r + kw]);
          }
        }
      }
    }
  }

  // One source row b of a 5x5 / 7x7 row pair: its NC loads, then kw-outer FMAs, each column unpacked just
  // before its first use (RP columns live); the weights of filter row b (output row 0, H0) and b - 1 (output
  // row 1, H1) are read once per tap.
  template <bool H0, bool H1>
  CNNKERN_HD void window_source_row(const DwDirectParams<T>& p, const float* wj, const T* src, int syb, int b,
                                    const int (&cx)[NC], const bool (&cok)[NC], const uint32_t (&cm)[NC],
                                    float (&acc)[RH][RP][V]) const {
    const DwGather<T>& g = p.g;
    Vec<T, VI> raw[NC];
    const bool rok = load_source_row(g, src, syb + b, cx, raw);
    const uint32_t rm = opaque_mask(rok);
    const float* w0 = wj + b * KT * p.tc * V;        // filter row b
    const float* w1 = wj + (b - 1) * KT * p.tc * V;  // filter row b - 1
    float sv[NC][VI];
#pragma unroll
    for (int kw = 0; kw < KT; ++kw) {
#pragma unroll
      for (int u = kw == 0 ? 0 : kw + RP - 1; u < kw + RP; ++u) {
        if constexpr (kMasked) {
          unpack_masked(raw[u], cm[u], rm, sv[u]);
        } else {
          dw_unpack_or_zero(raw[u], rok && cok[u], sv[u]);
        }
      }
      if constexpr (H0) {
        float wv[V];
        dw_load_smem<V>(w0 + kw * p.tc * V, wv);
#pragma unroll
        for (int r = 0; r < RP; ++r) fma(acc[0][r], wv, sv[r + kw]);
      }
      if constexpr (H1) {
        float wv[V];
        dw_load_smem<V>(w1 + kw * p.tc * V, wv);
#pragma unroll
        for (int r = 0; r < RP; ++r) fma(acc[1][r], wv, sv[r + kw]);
      }
    }
  }

  CNNKERN_HD void gather_residue(const DwDirectParams<T>& p, const float* smem, int j, const T* src, int y, int x0,
                                 float (&acc)[RP][V]) const {
    const DwGather<T>& g = p.g;
    const int ay = y + g.ph;
    const int ax = x0 + g.pw;
    const int kh0 = dw_first_tap(ay, p.sh_div, p.dh_mod, g.kh, g.kh_step);
    const int kw0 = dw_first_tap(ax, p.sw_div, p.dw_mod, g.kw, g.kw_step);
    if (kh0 >= g.kh || kw0 >= g.kw) return;
    // Source row/column of the first contributing tap; each further one is dsy/dsx closer to 0.
    const int sy0 = dw_exact_div(ay - kh0 * g.dh, p.sh_div);
    const int sxs = dw_exact_div(ax - kw0 * g.dw, p.sw_div);
    for (int kh = kh0, sy = sy0; kh < g.kh && sy >= 0; kh += g.kh_step, sy -= p.dsy) {
      if (sy >= g.src_h) continue;
      const T* srow = src + sy * g.ss.h;
      for (int kw = kw0, sx0 = sxs; kw < g.kw && sx0 + RP - 1 >= 0; kw += g.kw_step, sx0 -= p.dsx) {
        float wv[V];
        weights(p, smem, j, kh, kw, wv);
#pragma unroll
        for (int r = 0; r < RP; ++r) {
          const int sx = sx0 + r;
          if (!dw_in(sx, g.src_w)) continue;
          float sv[VI];
          load_as_float<T, VI>(srow + sx * g.ss.w, sv);
          fma(acc[r], wv, sv);
        }
      }
    }
  }
};

#if defined(__CUDACC__)
// Two blocks per SM (<= 128 registers): with the default bound ptxas keeps ~100 registers by interleaving
// each window load with the FMAs of the previous one, which serialises them again; with 128 it issues
// the 11-12 loads of a 3x3 window back to back (SASS checked: kernels/conv/depthwise_conv2d.md). Two blocks
// of 256 threads with 12 16-byte loads each keep ~96 KB per SM in flight, well above the ~25 KB that the
// bandwidth-latency product of one SM needs.
template <class T, int V, int MI, int KT, bool kRes, EpiKind kEpi = EpiKind::kPlain, int KS = 1, int RH = 1>
__global__ void __launch_bounds__(kDwThreads, 2) dw_direct_kernel(const DwDirectParams<T> p) {
  float* smem = dw_dynamic_smem();
  DwDirectBlock<T, V, MI, KT, kRes, kEpi, KS, RH> blk;
  blk.init(p, blockIdx.x, threadIdx.x);
  blk.stage(p, smem);
  __syncthreads();
  blk.run(p, smem);
  if constexpr (kEpi == EpiKind::kStats) {
    float* buf = smem + p.stats_off;  // disjoint from the weights run() may still be reading
    const int first = tree_first_step(p.tp);
    blk.stats_put_sums(p, buf);
    for (int s = first; s > 0; s >>= 1) {
      __syncthreads();
      blk.stats_tree(p, buf, s, V + 1);
    }
    __syncthreads();
    blk.stats_center(p, buf);
    __syncthreads();
    blk.stats_put_m2(p, buf);
    for (int s = first; s > 0; s >>= 1) {
      __syncthreads();
      blk.stats_tree(p, buf, s, V);
    }
    __syncthreads();
    blk.stats_store(p, buf);
  }
}
#endif

}  // namespace cnnkern
