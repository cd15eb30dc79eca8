"""cnnkern: hand-written CUDA and Triton convolution kernels for PyTorch.

    import cnnkern
    y = cnnkern.conv2d(x, w, b, stride=1, padding="same")   # = torch.nn.functional.conv2d
    y = cnnkern.depthwise_conv2d(x, w_dw, padding=1)         # = F.conv2d(..., groups=C); also routed from conv2d
    with cnnkern.use_backend("triton"): ...                  # force a backend
    print(cnnkern.explain_conv2d(x, w))                      # which backend runs, and why not the others
    y = cnnkern.group_pointwise_conv2d(x, w_1x1, groups=g, shuffle_groups=g)  # ShuffleNet: conv + shuffle
    y = cnnkern.shuffle_cat_pointwise(x1, x2, w_1x1, relu=True)  # ShuffleNetV2: shuffle(cat([x1, conv(x2)]))
    y = cnnkern.conv_transpose2d(x, w_t, stride=2, padding=1, output_padding=1)  # = F.conv_transpose2d
    report = cnnkern.convert(model)  # swap a model's nn.Conv2d/ConvTranspose2d/ChannelShuffle in place
    m = cnnkern.models.mobilenet_v2(); conv = cnnkern.nn.Conv2d(32, 64, 3)  # models, drop-in modules
"""

# cnnkern.models and cnnkern.nn import only cnnkern.ops.* submodules, so their place in this list is safe.
from cnnkern import models, nn, ops
from cnnkern._version import __version__
from cnnkern.convert import ConversionReport, convert
from cnnkern.ops import *  # every op family's public functions (cnnkern.ops.__all__)

__all__ = ["ConversionReport", "__version__", "convert", "models", "nn"]
__all__ += ops.__all__
