"""Custom ops, autograd Functions and backend choice."""

from cnnkern.ops.backend import available_backends, backend_status, last_choice, use_backend
from cnnkern.ops.conv2d import Conv2dFunction, conv2d, explain_conv2d
from cnnkern.ops.depthwise_conv2d import depthwise_conv2d

__all__ = ["Conv2dFunction", "available_backends", "backend_status", "conv2d", "depthwise_conv2d", "explain_conv2d",
           "last_choice", "use_backend"]
