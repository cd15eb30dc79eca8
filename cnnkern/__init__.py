"""cnnkern: hand-written CUDA and Triton convolution kernels for PyTorch.

    import cnnkern
    y = cnnkern.conv2d(x, w, b, stride=1, padding="same")   # = torch.nn.functional.conv2d
    y = cnnkern.depthwise_conv2d(x, w_dw, padding=1)         # = F.conv2d(..., groups=C); also routed from conv2d
    with cnnkern.use_backend("triton"): ...                  # force a backend
    print(cnnkern.explain_conv2d(x, w))                      # which backend runs, and why not the others
"""

from cnnkern.ops import (
    Conv2dFunction,
    available_backends,
    backend_status,
    conv2d,
    depthwise_conv2d,
    explain_conv2d,
    last_choice,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "Conv2dFunction",
    "__version__",
    "available_backends",
    "backend_status",
    "conv2d",
    "depthwise_conv2d",
    "explain_conv2d",
    "last_choice",
    "use_backend",
]
