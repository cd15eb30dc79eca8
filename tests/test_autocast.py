"""Under torch.autocast the cnnkern functions and modules run in the autocast dtype, exactly as ATen's.

A drop-in that ignored autocast would silently keep a converted model in fp32 under AMP.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
import cnnkern.nn as cnn
from tests.tolerances import tol

LOW = [torch.bfloat16, torch.float16]


def _cases():
    x = torch.randn(2, 6, 9, 7)
    w, w_dw, w_t = torch.randn(4, 3, 3, 3), torch.randn(12, 1, 3, 3), torch.randn(6, 2, 3, 3)
    b4, b12 = torch.randn(4), torch.randn(12)
    w_pw, p3 = torch.randn(9, 2, 1, 1), torch.randn(2, 3, 9, 7)
    return {
        "group_pointwise_conv2d": (
            lambda f: f(x, w_pw, b12[:9], groups=3, shuffle_groups=3), cnnkern.group_pointwise_conv2d,
            lambda x, w, b, groups, shuffle_groups: F.channel_shuffle(F.conv2d(x, w, b, groups=groups), 3)),
        "shuffle_cat_pointwise": (
            lambda f: f(p3, x, w_pw, b12[:9], groups=3), cnnkern.shuffle_cat_pointwise,
            lambda p, x, w, b, groups: F.channel_shuffle(torch.cat([p, F.conv2d(x, w, b, groups=groups)], 1), 2)),
        "conv2d": (lambda f: f(x, w, b4, padding=1, groups=2), cnnkern.conv2d, F.conv2d),
        "depthwise": (lambda f: f(x, w_dw, b12, stride=2, groups=6), cnnkern.conv2d, F.conv2d),
        "conv_transpose2d": (lambda f: f(x, w_t, b4, stride=2, padding=1, output_padding=1, groups=2),
                             cnnkern.conv_transpose2d, F.conv_transpose2d),
    }


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("case", ["conv2d", "depthwise", "conv_transpose2d", "group_pointwise_conv2d",
                                  "shuffle_cat_pointwise"])
def test_functions_follow_autocast(case, dtype):
    call, ours, theirs = _cases()[case]
    with torch.autocast("cpu", dtype=dtype):
        y, ref = call(ours), call(theirs)
    # The reference compositions cast their passthrough/cat operands themselves only where ATen does:
    # torch.cat of a float32 passthrough and a low-precision conv promotes, so compare in the conv's dtype.
    assert y.dtype == dtype and ref.dtype in (dtype, torch.float32)
    ref = ref.to(dtype)
    torch.testing.assert_close(y, ref, **tol(dtype))


def test_fp64_is_left_alone_as_aten_does():
    x, w = torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cnnkern.conv2d(x, w).dtype == F.conv2d(x, w).dtype == torch.float64


def test_module_under_autocast_trains_in_low_precision():
    torch.manual_seed(1)
    ref = torch.nn.Conv2d(5, 7, 3, padding=1)
    mod = cnn.Conv2d(5, 7, 3, padding=1)
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, r = mod(x), ref(x)
    assert y.dtype == r.dtype == torch.bfloat16
    y.float().square().sum().backward()
    r.float().square().sum().backward()
    # Parameters stay fp32 and receive fp32 gradients, as with torch's module.
    assert mod.weight.grad.dtype == ref.weight.grad.dtype == torch.float32
    torch.testing.assert_close(mod.weight.grad, ref.weight.grad, **tol(torch.bfloat16))
