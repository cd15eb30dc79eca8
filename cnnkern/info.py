"""``python -m cnnkern.info``: versions, GPU, and which backends are usable here (and why not)."""

from __future__ import annotations

import platform

import torch

import cnnkern
from cnnkern._ext import build_info


def collect() -> dict:
    info = {
        "cnnkern": cnnkern.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch CUDA runtime": torch.version.cuda or "none (CPU build)",
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "not installed"
    built = build_info()
    if built:
        info["extension built with CUDA toolkit"] = built.get("cuda_version", "?")
        info["extension built against torch"] = built.get("torch_version", "?")
        info["extension archs"] = built.get("archs", "?")
    else:
        info["extension"] = "not loaded"
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        info["GPU"] = f"{torch.cuda.get_device_name(idx)} (sm_{major}{minor})"
    else:
        info["GPU"] = "none visible"
    from cnnkern.triton import interpreting

    info["TRITON_INTERPRET"] = "on" if interpreting() else "off"
    return info


def main() -> None:
    info = collect()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    print("\nbackends (preference order for CUDA tensors; CPU tensors use reference, or triton if forced):")
    for name, why in cnnkern.backend_status().items():
        print(f"  {name:<10} {'available' if why is None else 'unavailable: ' + why}")


if __name__ == "__main__":
    main()
