// The input gradient of a conv2d as stride-1 forward conv2ds, one per stride phase: when it may be, and which
// forwards. Torch-free (a pure function of the shape), so tests/cpp/conv2d_dgrad_as_fwd_test.cu checks it on
// the CPU.
//
// Per dimension (rows; columns alike), stride S, dilation D, top padding P, kernel K, grad_in extent H,
// grad_out extent OH. grad_in[ih] = sum over r and oh with oh*S - P + r*D = ih of grad_out[oh] * w[r].
// Phase phi in [0, S) holds the rows ih = S*i + phi, i < H_phi = ceil((H - phi) / S). A tap r reaches it iff
// r*D = phi + P (mod S): with g = gcd(D, S) that is r = r0 (mod q), q = S / g (none when g does not divide
// phi + P), so the phase's taps are r_j = r0 + j*q, j < taps, and the row it reads is
//   oh = i + e - j*D/g,   e = (phi + P - r0*D) / S   (exact).
// Reversing the taps (j' = taps - 1 - j) makes that a stride-1 forward over grad_out:
//   grad_in[S*i + phi] = conv2d_fwd(grad_out, w'_phi, top padding p' = (taps - 1)*D/g - e, dilation D/g)[i]
//   w'_phi[c][k][j'][l'] = w[k][c][r_{taps_h-1-j'}][s_{taps_w-1-l'}]          (shape [C_in][C_out][taps_h][taps_w])
// whose output extent is H_phi. Where p' < 0 (padding past what the phase's taps span: the first -p' rows of
// grad_out were made from padding alone and reach no row of the phase) the forward starts -p' rows into
// grad_out (`skip`) with p' = 0; the kernels take no negative padding. Its bottom padding
// is implicit in the extents (conv2d_params.cuh): the last row reads up to H_phi - 1 + e, so p'_hi = H_phi + e -
// OH, and a negative p'_hi only means that the last grad_out rows reach no grad_in row of the phase (they
// were produced from padding alone): the kernels bounds-check every gathered row and compute each output row
// on its own, so such a "cropped" forward is fine for them although host::check_geometry would not accept it
// as an op. A phase no tap reaches (e.g. the odd rows of a stride-2 1x1) is all zeros (the bias of a
// transposed conv).
// For stride 1 there is one phase with every tap: p' = D*(K-1) - P, p'_hi = H - OH + P, dilation D: the
// stride-1 plan `dgrad_as_fwd` below (which refused p'_hi < 0 before 2026-12-02; see above why it need not).
//
// Why only 16-bit: the sm_90a forward takes fp16 / bf16 only; fp32 keeps the step-1 kernel either way.
// The rest of the sm_90a forward's gates (channels, layouts, env, build, device) are applied by its own
// conv2d_fwd_sm90_why_not on each transformed problem (csrc/cuda/conv2d.cpp), not repeated here.
#pragma once

#include <cstdint>
#include <numeric>
#include <vector>

#include "conv/conv2d_params.cuh"

namespace cnnkern {

// Coordinates including padding and dilation stay below this in the kernels (host::kCoordLimit in
// csrc/cuda/host_common.h, which includes torch; conv2d.cpp static_asserts the two are equal).
inline constexpr int64_t kDgradAsFwdCoordLimit = int64_t{1} << 30;

// One dimension of one stride phase (see the header comment).
struct DgradPhaseDim {
  int extent = 0;      // H_phi: grad_in rows phi, phi + S, ... < H
  int r0 = 0, rq = 1;  // the taps r0 + j * rq, j < taps
  int taps = 0;
  int dil = 1;         // the forward's dilation D / gcd(D, S)
  int64_t pad = 0;     // the forward's top padding p' (>= 0: see skip)
  int64_t pad_hi = 0;  // its implied bottom padding p'_hi (negative: the last grad_out rows are not read)
  int64_t skip = 0;    // grad_out rows before the forward's input (where p' would be negative)
  int in = 0;          // grad_out rows the forward reads as its input: OH - skip
};

inline DgradPhaseDim dgrad_phase_dim(int phi, int stride, int dil, int pad, int k, int in, int out) {
  DgradPhaseDim d;
  d.extent = phi < in ? (in - phi + stride - 1) / stride : 0;
  const int g = std::gcd(dil, stride);
  d.rq = stride / g;
  d.dil = dil / g;
  for (int r = 0; r < d.rq && r < k; ++r) {
    if ((int64_t{phi} + pad - int64_t{r} * dil) % stride == 0) {  // C++ %: 0 exactly when divisible, any sign
      d.r0 = r;
      d.taps = (k - 1 - r) / d.rq + 1;
      break;
    }
  }
  d.in = out;
  if (d.taps > 0) {
    const int64_t e = (int64_t{phi} + pad - int64_t{d.r0} * dil) / stride;  // exact
    d.pad = int64_t{d.taps - 1} * d.dil - e;
    d.pad_hi = int64_t{d.extent} + e - out;
    if (d.pad < 0) {  // the first rows of grad_out reach no row of the phase: start the forward's input later
      d.skip = -d.pad;
      d.pad = 0;
      d.in = static_cast<int>(out - d.skip);
      if (d.in <= 0) d.taps = 0;  // nothing left to read: the phase is zero
    }
  }
  return d;
}

struct DgradPhase {
  int ph = 0, pw = 0;  // grad_in rows ph + i * stride_h, columns pw + j * stride_w
  DgradPhaseDim y, x;  // rows, columns
  Conv2dShape fwd{};   // x = grad_out, weight = w'_phase, y = the phase's grad_in; valid unless zero()
  bool zero() const { return y.taps == 0 || x.taps == 0; }  // no tap reaches it: all zeros (or the bias)
};

struct DgradPhasesAsFwd {
  const char* why_not = nullptr;   // nullptr when the dgrad is the phases below; otherwise why not (explain())
  std::vector<DgradPhase> phases;  // the non-empty phases (extent > 0 in both dimensions)

  bool applies() const { return why_not == nullptr; }
};

// s: the dgrad's shape as make_shape builds it (x = grad_in, y = grad_out); elem_bytes: sizeof the element.
inline DgradPhasesAsFwd dgrad_phases_as_fwd(const Conv2dShape& s, int elem_bytes) {
  DgradPhasesAsFwd plan;
  if (elem_bytes != 2) {
    plan.why_not = "fp32 keeps the step-1 dgrad kernel";
    return plan;
  }
  if (s.groups != 1) {
    plan.why_not = "grouped convolution";
    return plan;
  }
  for (int ph = 0; ph < s.stride_h; ++ph) {
    for (int pw = 0; pw < s.stride_w; ++pw) {
      DgradPhase p;
      p.ph = ph;
      p.pw = pw;
      p.y = dgrad_phase_dim(ph, s.stride_h, s.dil_h, s.pad_h, s.kh, s.h, s.oh);
      p.x = dgrad_phase_dim(pw, s.stride_w, s.dil_w, s.pad_w, s.kw, s.w, s.ow);
      if (p.y.extent == 0 || p.x.extent == 0) continue;
      if (p.zero()) {
        plan.phases.push_back(p);
        continue;
      }
      // The forward's coordinate bounds (host::check_geometry with in = OH, out = H_phi): grad_out extent + p' +
      // the dilated kernel, and (H_phi + 1) + p'.
      const int64_t span_h = int64_t{p.y.dil} * (p.y.taps - 1), span_w = int64_t{p.x.dil} * (p.x.taps - 1);
      if (int64_t{p.y.in} + p.y.pad + 1 + span_h >= kDgradAsFwdCoordLimit ||
          int64_t{p.x.in} + p.x.pad + 1 + span_w >= kDgradAsFwdCoordLimit ||
          int64_t{p.y.extent} + 1 + p.y.pad >= kDgradAsFwdCoordLimit ||
          int64_t{p.x.extent} + 1 + p.x.pad >= kDgradAsFwdCoordLimit) {
        plan.why_not = "the equivalent forward's coordinates exceed 32 bits";
        return plan;
      }
      // The forward reads grad_out from row skip_h, column skip_w on (C_out channels) and writes the phase of
      // grad_in (C_in channels).
      Conv2dShape& f = p.fwd;
      f.n = s.n;
      f.c_in = f.cg_in = s.c_out;
      f.h = p.y.in;
      f.w = p.x.in;
      f.c_out = f.cg_out = s.c_in;
      f.oh = p.y.extent;
      f.ow = p.x.extent;
      f.kh = p.y.taps;
      f.kw = p.x.taps;
      f.groups = 1;
      f.stride_h = f.stride_w = 1;
      f.pad_h = static_cast<int>(p.y.pad);
      f.pad_w = static_cast<int>(p.x.pad);
      f.dil_h = p.y.dil;
      f.dil_w = p.x.dil;
      plan.phases.push_back(p);
    }
  }
  return plan;
}

// The stride-1 plan: one phase with every tap, or why not.
struct DgradAsFwd {
  const char* why_not;  // nullptr when the dgrad is the forward below; otherwise why not (for explain())
  Conv2dShape fwd;      // x = grad_out, weight = w' ([C_in][C_out][R][S]), y = grad_in; valid when why_not == nullptr

  bool applies() const { return why_not == nullptr; }
};

inline DgradAsFwd dgrad_as_fwd(const Conv2dShape& s, int elem_bytes) {
  DgradAsFwd plan{nullptr, Conv2dShape{}};
  if (elem_bytes == 2 && s.groups == 1 && (s.stride_h != 1 || s.stride_w != 1)) {
    plan.why_not = "stride > 1 (dgrad_phases_as_fwd: one forward per stride phase)";
    return plan;
  }
  const DgradPhasesAsFwd phases = dgrad_phases_as_fwd(s, elem_bytes);
  plan.why_not = phases.why_not;
  if (plan.applies()) plan.fwd = phases.phases.at(0).fwd;
  return plan;
}

}  // namespace cnnkern
