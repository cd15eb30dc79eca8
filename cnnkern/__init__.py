"""cnnkern: hand-written CUDA and Triton convolution kernels for PyTorch.

    import cnnkern
    y = cnnkern.conv2d(x, w, b, stride=1, padding="same")   # = torch.nn.functional.conv2d
    y = cnnkern.depthwise_conv2d(x, w_dw, padding=1)         # = F.conv2d(..., groups=C); also routed from conv2d
    with cnnkern.use_backend("triton"): ...                  # force a backend
    print(cnnkern.explain_conv2d(x, w))                      # which backend runs, and why not the others
    y = cnnkern.group_pointwise_conv2d(x, w_1x1, groups=g, shuffle_groups=g)  # ShuffleNet: conv + shuffle
    y = cnnkern.shuffle_cat_pointwise(x1, x2, w_1x1, relu=True)  # ShuffleNetV2: shuffle(cat([x1, conv(x2)]))
"""

from cnnkern.ops import (
    Conv2dFunction,
    available_backends,
    backend_status,
    channel_shuffle,
    conv2d,
    depthwise_conv2d,
    explain_conv2d,
    group_pointwise_conv2d,
    last_choice,
    shuffle_cat_pointwise,
    shuffle_cat_pointwise2,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "Conv2dFunction",
    "__version__",
    "available_backends",
    "backend_status",
    "channel_shuffle",
    "conv2d",
    "depthwise_conv2d",
    "explain_conv2d",
    "group_pointwise_conv2d",
    "last_choice",
    "shuffle_cat_pointwise",
    "shuffle_cat_pointwise2",
    "use_backend",
]
