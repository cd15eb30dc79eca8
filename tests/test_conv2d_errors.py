"""Bad input gets an error as clear as PyTorch's, naming the shapes, dtypes or groups involved."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern


def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


# (input, weight, kwargs, bias, regex the message must match)
BAD = [
    pytest.param(_x(5, 5), _x(4, 3, 3, 3), {}, None, r"3D \(unbatched\) or 4D.*\[5, 5\]", id="rank-2-input"),
    pytest.param(_x(1, 2, 3, 5, 5), _x(4, 3, 3, 3), {}, None, r"3D \(unbatched\) or 4D", id="rank-5-input"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3), {}, None, r"4-D weight.*\[4, 3, 3\]", id="rank-3-weight"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 2, 3, 3), {}, None, r"groups=1.*\[4, 2, 3, 3\].*2 channels.*got 3",
                 id="channel-mismatch"),
    pytest.param(_x(1, 6, 5, 5), _x(6, 3, 3, 3), {"groups": 3}, None, r"groups=3.*9 channels.*got 6",
                 id="group-mismatch"),
    pytest.param(_x(1, 6, 5, 5), _x(4, 2, 3, 3), {"groups": 3}, None, r"divisible by 3.*\[4, 2, 3, 3\]",
                 id="c-out-not-divisible"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 7, 7), {}, None, r"padded input size.*\(5 x 5\).*\(7 x 7\)",
                 id="kernel-larger-than-input"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"stride": 0}, None, r"non-positive stride", id="stride-0"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"stride": (1, -2)}, None, r"non-positive stride",
                 id="stride-negative"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"padding": -1}, None, r"negative padding", id="padding-neg"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"dilation": 0}, None, r"dilation", id="dilation-0"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"groups": 0}, None, r"non-positive groups", id="groups-0"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {}, _x(3), r"bias.*4 elements.*size \[3\]", id="bias-size"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {}, _x(4, 1), r"bias.*1-dimensional", id="bias-rank"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"padding": "same", "stride": 2}, None,
                 r"'same' is not supported for strided", id="same-strided"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"padding": "circular"}, None,
                 r"Invalid padding string 'circular'.*'full'", id="bad-padding-string"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3, dtype=torch.float16), {}, None,
                 r"input \(torch.float32\) and weight \(torch.float16\)", id="mixed-dtype"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {}, _x(4, dtype=torch.float64),
                 r"input \(torch.float32\) and bias \(torch.float64\)", id="mixed-bias-dtype"),
    pytest.param(torch.ones(1, 3, 5, 5, dtype=torch.int32), torch.ones(4, 3, 3, 3, dtype=torch.int32), {},
                 None, r"floating-point.*torch.int32", id="integer-dtype"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 0, 3), {}, None, r"kernel size must be positive", id="kernel-0"),
    pytest.param(_x(1, 3, 5, 5), _x(4, 3, 3, 3), {"stride": (1, 2, 3)}, None, r"stride.*pair",
                 id="stride-3-values"),
]


@pytest.mark.parametrize("x,w,kwargs,bias,match", BAD)
def test_bad_input_raises_clear_error(x, w, kwargs, bias, match):
    with pytest.raises(RuntimeError, match=match):
        cnnkern.conv2d(x, w, bias, **kwargs)


# ATen's CPU conv accepts integer tensors; cnnkern's kernels are floating-point only, deliberately.
_ALSO_REJECTED_BY_PYTORCH = [p for p in BAD if p.id != "integer-dtype"]


@pytest.mark.parametrize("x,w,kwargs,bias,match", _ALSO_REJECTED_BY_PYTORCH)
def test_pytorch_also_rejects(x, w, kwargs, bias, match):
    """Every case we reject is one F.conv2d rejects too: no valid PyTorch call is refused."""
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        F.conv2d(x, w, bias, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to hold one tensor on another device")
def test_mixed_devices():
    with pytest.raises(RuntimeError, match=r"same device.*cpu.*cuda"):
        cnnkern.conv2d(_x(1, 3, 5, 5), _x(4, 3, 3, 3).cuda())


def test_mixed_devices_meta():
    # Meta tensors stand in for a second device so the check runs on a CPU-only machine too.
    with pytest.raises(RuntimeError, match=r"same device.*input is on cpu.*weight is on meta"):
        cnnkern.conv2d(_x(1, 3, 5, 5), torch.empty(4, 3, 3, 3, device="meta"))


def test_backward_op_rejects_wrong_grad_shape():
    g = torch.randn(1, 4, 4, 4)
    w = torch.randn(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"grad_output of size \[1, 4, 3, 3\].*\[1, 4, 4, 4\]"):
        torch.ops.cnnkern.conv2d_backward_input(g, w, [1, 3, 5, 5], [1, 1], [0, 0, 0, 0], [1, 1], 1, False)
