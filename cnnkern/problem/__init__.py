"""The bottom layer: what a convolution problem is, independent of any backend.

Argument normalisation and validation (PyTorch's error wording), the validated specs the backends receive
(``Conv2dSpec``, ``GroupPointwiseSpec``, ``ChannelMap``), which kernel family a problem belongs to, and the
output memory-format rule. ``cnnkern.ops``, ``cnnkern.triton`` and ``cnnkern.reference`` import from here;
this package imports nothing else from cnnkern.
"""

# The one list of op families. Each name is a module in cnnkern/ops (its public functions, listed in its
# __all__), and, where the backend has kernels for it, in cnnkern/reference, cnnkern/triton and cnnkern/cuda;
# tests/test_<name>.py and bench/bench_<name>.py test and time it. Adding an op: its own files, plus one
# name here.
FAMILIES = (
    "conv2d",
    "depthwise_conv2d",
    "conv_transpose2d",
    "group_pointwise_conv2d",
    "channel_shuffle",
    "shuffle_cat_pointwise",
    "conv_bn_relu",
)
