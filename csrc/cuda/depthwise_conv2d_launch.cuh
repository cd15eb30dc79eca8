// Definitions of the launch entry points declared in depthwise_conv2d_launch.h. Only included by the
// per-dtype instantiation files. Every launch goes on the caller's stream and is followed by a launch
// check; kernels that need more than the default 48 KB of dynamic shared memory opt in first.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

#include "conv/depthwise_conv2d.cuh"
#include "cuda/depthwise_conv2d_launch.h"

namespace cnnkern {
namespace dw_launch {

template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > kDwSmemDefault) {
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

template <class T, int KT, EpiKind E = EpiKind::kPlain>
void tiled(const DwTiledParams<T>& p, cudaStream_t stream) {
  auto kernel = dw_tiled_kernel<T, KT, E>;
  allow_smem(kernel, p.smem_bytes);
  const dim3 grid(static_cast<unsigned>(p.tiles_x * p.tiles_y), p.grid_y, dw_tiled_grid_z(p));
  kernel<<<grid, p.threads, p.smem_bytes, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class T, int V, int MI, int KT, bool kRes, EpiKind E = EpiKind::kPlain, int KS = 1, int RH = 1>
void direct(const DwDirectParams<T>& p, cudaStream_t stream) {
  TORCH_CHECK(p.rh == RH, "cnnkern depthwise: internal error, plan of ", p.rh, " rows per group for a kernel of ", RH);
  auto kernel = dw_direct_kernel<T, V, MI, KT, kRes, E, KS, RH>;
  allow_smem(kernel, p.smem_bytes);
  kernel<<<p.grid_x, p.threads, p.smem_bytes, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class T, int V, int MI, int KS, EpiKind E>
void direct_window_s(const DwDirectParams<T>& p, int kt, cudaStream_t stream) {
  // Row pairs (dw_direct_rows): 16-byte vectors, multiplier 1, stride 1.
  if constexpr (KS == 1 && MI == 1 && V * sizeof(T) == 16) {
    if (p.rh == 2) {
      switch (kt) {
        case 3: direct<T, V, MI, 3, false, E, KS, 2>(p, stream); return;
        case 5: direct<T, V, MI, 5, false, E, KS, 2>(p, stream); return;
        case 7: direct<T, V, MI, 7, false, E, KS, 2>(p, stream); return;
        default: TORCH_CHECK(false, "cnnkern depthwise: internal error, window kt=", kt);
      }
    }
  }
  switch (kt) {
    case 3:
      direct<T, V, MI, 3, false, E, KS>(p, stream);
      break;
    case 5:
      direct<T, V, MI, 5, false, E, KS>(p, stream);
      break;
    case 7:
      direct<T, V, MI, 7, false, E, KS>(p, stream);
      break;
    default:
      TORCH_CHECK(false, "cnnkern depthwise: internal error, window kt=", kt);
  }
}

// The forward-form direct kernel of a vector width: the window (dw_direct_window) or the runtime taps.
template <class T, int V, int MI, EpiKind E = EpiKind::kPlain>
void direct_window(const DwDirectParams<T>& p, DwWindow w, cudaStream_t stream) {
  if (w.kt == 0) {
    direct<T, V, MI, 0, false, E>(p, stream);
  } else if (w.ks == 1) {
    direct_window_s<T, V, MI, 1, E>(p, w.kt, stream);
  } else {
    TORCH_CHECK(w.ks == 2, "cnnkern depthwise: internal error, window stride ", w.ks);
    direct_window_s<T, V, MI, 2, E>(p, w.kt, stream);
  }
}

// Forward form (E: any epilogue) or, with E == kPlain, the residue form, by vector width: 16 bytes
// (multiplier 1 or 2 folded in), the narrower ones (multiplier 1), or scalar (no window).
template <class T, EpiKind E>
void direct_any(const DwDirectParams<T>& p, int v, int mi, DwWindow w, cudaStream_t stream) {
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  const bool res = p.g.residue;
  TORCH_CHECK(!res || (E == EpiKind::kPlain && w.kt == 0 && mi == 1),
              "cnnkern depthwise: internal error, residue form with an epilogue, a window or mi=", mi);
  TORCH_CHECK((mi == 1 || (mi == 2 && v == kV)) && (v > 1 || w.kt == 0),
              "cnnkern depthwise: internal error, no direct kernel for v=", v, " mi=", mi, " kt=", w.kt);
  if (res) {
    if constexpr (E == EpiKind::kPlain) {
      switch (v) {
        case 1: direct<T, 1, 1, 0, true>(p, stream); return;
        case 2: direct<T, 2, 1, 0, true>(p, stream); return;
        case 4: direct<T, 4, 1, 0, true>(p, stream); return;
        case 8:
          if constexpr (kV >= 8) {
            direct<T, 8, 1, 0, true>(p, stream);
            return;
          }
          break;
        default: break;
      }
    }
  } else if (v == 1) {
    direct<T, 1, 1, 0, false, E>(p, stream);
    return;
  } else if (v == kV) {
    if (mi == 1) {
      direct_window<T, kV, 1, E>(p, w, stream);
    } else {
      direct_window<T, kV, 2, E>(p, w, stream);
    }
    return;
  } else if (v == 2) {
    direct_window<T, 2, 1, E>(p, w, stream);
    return;
  } else if (v == 4) {
    if constexpr (kV > 4) {
      direct_window<T, 4, 1, E>(p, w, stream);
      return;
    }
  }
  TORCH_CHECK(false, "cnnkern depthwise: internal error, no direct kernel for v=", v);
}

template <class T, int VA, int KS, EpiKind E>
void column(const DwColumnParams<T>& p, cudaStream_t stream) {
  dw_column_kernel<T, VA, KS, E><<<p.grid_x, p.threads, p.smem_bytes, stream>>>(p);  // <= 48 KB: dw_column_ok
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class T, int VA, EpiKind E>
void column_s(const DwColumnParams<T>& p, cudaStream_t stream) {
  TORCH_CHECK(p.g.sh == 1 || p.g.sh == 2, "cnnkern depthwise: internal error, column walk with stride ", p.g.sh);
  p.g.sh == 1 ? column<T, VA, 1, E>(p, stream) : column<T, VA, 2, E>(p, stream);
}

// The column walk by access width: 4 or 8 bytes (fp32 1 or 2 elements, 16-bit 2 or 4), then stride.
template <class T, EpiKind E>
void column_any(const DwColumnParams<T>& p, int va, cudaStream_t stream) {
  constexpr int kVa4 = 4 / static_cast<int>(sizeof(T)), kVa8 = 8 / static_cast<int>(sizeof(T));
  if (va == kVa4) {
    column_s<T, kVa4, E>(p, stream);
  } else {
    TORCH_CHECK(va == kVa8, "cnnkern depthwise: internal error, no column walk for ", va, " elements per access");
    column_s<T, kVa8, E>(p, stream);
  }
}

template <class T, EpiKind E>
void tiled_k(const DwTiledParams<T>& p, cudaStream_t stream) {
  switch (dw_window_k(p.g)) {
    case 3:
      tiled<T, 3, E>(p, stream);
      break;
    case 5:
      tiled<T, 5, E>(p, stream);
      break;
    case 7:
      tiled<T, 7, E>(p, stream);
      break;
    default:
      tiled<T, 0, E>(p, stream);
  }
}

template <class T, int VW, int KT>
void wgrad(const DwWgradParams<T>& p, cudaStream_t stream) {
  auto kernel = dw_wgrad_kernel<T, VW, KT>;
  allow_smem(kernel, p.smem_bytes);
  const dim3 grid(static_cast<unsigned>(p.chunks * p.cblocks), static_cast<unsigned>(p.splits));
  kernel<<<grid, kDwThreads, p.smem_bytes, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class T, int VW>
void wgrad_k(const DwWgradParams<T>& p, int kt, cudaStream_t stream) {
  switch (kt) {
    case 3:
      wgrad<T, VW, 3>(p, stream);
      break;
    case 5:
      wgrad<T, VW, 5>(p, stream);
      break;
    case 7:
      wgrad<T, VW, 7>(p, stream);
      break;
    default:
      wgrad<T, VW, 0>(p, stream);
  }
}

}  // namespace dw_launch

template <class T>
void launch_dw_column(const DwColumnParams<T>& p, int va, cudaStream_t stream) {
  dw_launch::column_any<T, EpiKind::kPlain>(p, va, stream);
}
template <class T>
void launch_dw_column_act(const DwColumnParams<T>& p, int va, cudaStream_t stream) {
  dw_launch::column_any<T, EpiKind::kAct>(p, va, stream);
}

template <class T>
void launch_dw_tiled(const DwTiledParams<T>& p, cudaStream_t stream) {
  dw_launch::tiled_k<T, EpiKind::kPlain>(p, stream);
}

template <class T>
void launch_dw_tiled_act(const DwTiledParams<T>& p, cudaStream_t stream) {
  dw_launch::tiled_k<T, EpiKind::kAct>(p, stream);
}
template <class T>
void launch_dw_direct_act(const DwDirectParams<T>& p, int v, int mi, DwWindow w, cudaStream_t stream) {
  dw_launch::direct_any<T, EpiKind::kAct>(p, v, mi, w, stream);
}
template <class T>
void launch_dw_tiled_stats(const DwTiledParams<T>& p, cudaStream_t stream) {
  dw_launch::tiled_k<T, EpiKind::kStats>(p, stream);
}
template <class T>
void launch_dw_direct_stats(const DwDirectParams<T>& p, int v, int mi, DwWindow w, cudaStream_t stream) {
  dw_launch::direct_any<T, EpiKind::kStats>(p, v, mi, w, stream);
}

template <class T>
void launch_dw_direct(const DwDirectParams<T>& p, int v, int mi, DwWindow w, cudaStream_t stream) {
  dw_launch::direct_any<T, EpiKind::kPlain>(p, v, mi, w, stream);
}

template <class T>
void launch_dw_wgrad(const DwWgradParams<T>& p, int vw, int kt, const DwWgradFinalizeParams<T>& f,
                     cudaStream_t stream) {
  if (vw == 4) {
    dw_launch::wgrad_k<T, 4>(p, kt, stream);
  } else {
    TORCH_CHECK(vw == 1, "cnnkern depthwise: internal error, wgrad with vw=", vw);
    dw_launch::wgrad_k<T, 1>(p, kt, stream);
  }
  const int64_t total = int64_t{f.c_out} * f.kh * f.kw;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kDwThreads - 1) / kDwThreads, 4096));
  dw_wgrad_finalize_kernel<T><<<blocks, kDwThreads, 0, stream>>>(f, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cnnkern

#define CNNKERN_INSTANTIATE_DW_GATHER(T)                                                                    \
  template void cnnkern::launch_dw_tiled<T>(const cnnkern::DwTiledParams<T>&, cudaStream_t);               \
  template void cnnkern::launch_dw_direct<T>(const cnnkern::DwDirectParams<T>&, int, int, cnnkern::DwWindow, cudaStream_t); \
  template void cnnkern::launch_dw_column<T>(const cnnkern::DwColumnParams<T>&, int, cudaStream_t)
#define CNNKERN_INSTANTIATE_DW_FWD_ACT(T)                                                                   \
  template void cnnkern::launch_dw_tiled_act<T>(const cnnkern::DwTiledParams<T>&, cudaStream_t);           \
  template void cnnkern::launch_dw_direct_act<T>(const cnnkern::DwDirectParams<T>&, int, int, cnnkern::DwWindow, cudaStream_t); \
  template void cnnkern::launch_dw_column_act<T>(const cnnkern::DwColumnParams<T>&, int, cudaStream_t)
#define CNNKERN_INSTANTIATE_DW_FWD_STATS(T)                                                                 \
  template void cnnkern::launch_dw_tiled_stats<T>(const cnnkern::DwTiledParams<T>&, cudaStream_t);         \
  template void cnnkern::launch_dw_direct_stats<T>(const cnnkern::DwDirectParams<T>&, int, int, cnnkern::DwWindow, cudaStream_t)
#define CNNKERN_INSTANTIATE_DW_WGRAD(T)                                                                    \
  template void cnnkern::launch_dw_wgrad<T>(const cnnkern::DwWgradParams<T>&, int, int,                    \
                                            const cnnkern::DwWgradFinalizeParams<T>&, cudaStream_t)
