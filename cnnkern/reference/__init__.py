"""ATen ground truth: the CPU path of cnnkern and what every kernel is tested against.

One module per op (``cnnkern.reference.conv2d``), each with the functional form and the backend entry
points.
"""
