"""The bottom layer: what a convolution problem is, independent of any backend.

Argument normalisation and validation (PyTorch's error wording), the validated specs the backends receive
(``Conv2dSpec``, ``GroupPointwiseSpec``, ``ChannelMap``), which kernel family a problem belongs to, and the
output memory-format rule. ``cnnkern.ops``, ``cnnkern.triton`` and ``cnnkern.reference`` import from here;
this package imports nothing else from cnnkern.
"""
