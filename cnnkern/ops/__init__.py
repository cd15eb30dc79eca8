"""Custom ops, autograd Functions and backend choice."""

from cnnkern.ops.backend import available_backends, backend_status, last_choice, use_backend
from cnnkern.ops.channel_shuffle import channel_shuffle
from cnnkern.ops.conv2d import Conv2dFunction, conv2d, explain_conv2d
from cnnkern.ops.conv_transpose2d import ConvTranspose2dFunction, conv_transpose2d, explain_conv_transpose2d
from cnnkern.ops.depthwise_conv2d import depthwise_conv2d
from cnnkern.ops.group_pointwise_conv2d import group_pointwise_conv2d
from cnnkern.ops.shuffle_cat_pointwise import shuffle_cat_pointwise, shuffle_cat_pointwise2

__all__ = ["Conv2dFunction", "ConvTranspose2dFunction", "available_backends", "backend_status", "channel_shuffle",
           "conv2d", "conv_transpose2d", "depthwise_conv2d", "explain_conv2d", "explain_conv_transpose2d",
           "group_pointwise_conv2d", "last_choice", "shuffle_cat_pointwise",
           "shuffle_cat_pointwise2", "use_backend"]
