"""Autograd and layout parity with ATen: double backward, forward-mode AD, output memory formats, 'full' padding.

Every op is checked against its ATen composition on every backend usable here: on the CPU the reference
backend (which routes to ATen itself, so these also check that the routing keeps ATen's autograd) and the
Triton kernels under the interpreter (cnnkern's own double-backward and jvp formulas).
"""

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import backend_params

import cnnkern
from cnnkern.reference.group_pointwise_conv2d import group_pointwise_conv2d as reference_pointwise

BACKENDS = backend_params()


def _r(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_()


def _frozen(*shape):
    return torch.rand(*shape, dtype=torch.float64) + 0.5


# name -> (cnnkern fn, ATen fn, differentiable inputs); each fn takes the inputs positionally.
def _cases():
    sc, sh = _frozen(6), torch.randn(6, dtype=torch.float64)
    return {
        "conv2d": (lambda x, w, b: cnnkern.conv2d(x, w, b, stride=2, padding=1, dilation=(1, 2)),
                   lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, dilation=(1, 2)),
                   (_r(1, 2, 5, 4), _r(2, 2, 3, 2), _r(2))),
        "conv2d-groups-same-even": (lambda x, w: cnnkern.conv2d(x, w, None, padding="same", groups=2),
                                    lambda x, w: F.conv2d(x, w, None, padding="same", groups=2),
                                    (_r(1, 4, 3, 4), _r(4, 2, 2, 3))),
        "depthwise": (lambda x, w, b: cnnkern.depthwise_conv2d(x, w, b, stride=(2, 1), padding=1),
                      lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2),
                      (_r(1, 2, 5, 4), _r(4, 1, 3, 3), _r(4))),
        "conv_transpose2d": (lambda x, w, b: cnnkern.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                             lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                             (_r(1, 2, 3, 3), _r(2, 2, 3, 3), _r(2))),
        "conv_transpose2d-depthwise": (lambda x, w: cnnkern.conv_transpose2d(x, w, None, stride=2, groups=2),
                                       lambda x, w: F.conv_transpose2d(x, w, None, stride=2, groups=2),
                                       (_r(1, 2, 3, 2), _r(2, 1, 3, 3))),
        "group_pointwise": (lambda x, w, b: cnnkern.group_pointwise_conv2d(x, w, b, groups=2, shuffle_groups=3,
                                                                           scale=sc, shift=sh),
                            lambda x, w, b: reference_pointwise(x, w, b, 2, 3, scale=sc, shift=sh),
                            (_r(1, 4, 2, 3), _r(6, 2, 1, 1), _r(6))),
        "group_pointwise-relu": (lambda x, w, b: cnnkern.group_pointwise_conv2d(x, w, b, groups=2, shuffle_groups=2,
                                                                                relu=True),
                                 lambda x, w, b: reference_pointwise(x, w, b, 2, 2, relu=True),
                                 (_r(1, 4, 2, 3), _r(6, 2, 1, 1), _r(6, scale=0.1))),
        "channel_shuffle": (lambda x: cnnkern.channel_shuffle(x, 3), lambda x: F.channel_shuffle(x, 3),
                            (_r(1, 6, 2, 2),)),
        "shuffle_cat_pointwise": (
            lambda p, x, w: cnnkern.shuffle_cat_pointwise(p, x, w, relu=True),
            lambda p, x, w: F.channel_shuffle(torch.cat([p, reference_pointwise(x, w, relu=True)], 1), 2),
            (_r(1, 3, 2, 3), _r(1, 4, 2, 3), _r(3, 4, 1, 1))),
        "shuffle_cat_pointwise2": (
            lambda a, wa, b, wb: cnnkern.shuffle_cat_pointwise2(a, wa, b, wb, scale2=sc[:2]),
            lambda a, wa, b, wb: F.channel_shuffle(torch.cat([reference_pointwise(a, wa),
                                                              reference_pointwise(b, wb, scale=sc[:2])], 1), 2),
            (_r(1, 3, 2, 2), _r(4, 3, 1, 1), _r(1, 5, 2, 2), _r(2, 5, 1, 1))),
    }


CASE_NAMES = list(_cases())


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_double_backward(device, backend, case):
    fn, _aten, inputs = _cases()[case]
    inputs = tuple(t.detach().to(device).requires_grad_() for t in inputs)
    # fast_mode checks a random projection of the Jacobian (a handful of evaluations instead of one per
    # element), which the Triton interpreter needs to finish in seconds; the full check runs on ATen's route.
    fast = backend == "triton"
    with cnnkern.use_backend(backend):
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, inputs, fast_mode=fast)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_jvp_matches_aten(device, backend, case):
    fn, aten, inputs = _cases()[case]
    primals = tuple(t.detach().to(device) for t in inputs)
    tangents = tuple(torch.randn_like(t) for t in primals)
    want = torch.func.jvp(aten, primals, tangents)
    with cnnkern.use_backend(backend):
        got = torch.func.jvp(fn, primals, tangents)
        # The same through torch.autograd.forward_ad's dual tensors (no functorch transform).
        import torch.autograd.forward_ad as fwAD

        with fwAD.dual_level():
            duals = [fwAD.make_dual(p, t) for p, t in zip(primals, tangents)]
            dual_tangent = fwAD.unpack_dual(fn(*duals)).tangent
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(dual_tangent, want[1], atol=1e-10, rtol=1e-9)


def _fmt(t):
    if t.is_contiguous():
        return "contiguous"
    return "channels_last" if t.is_contiguous(memory_format=torch.channels_last) else "strided"


_LAYOUTS = {
    "x-cl": (torch.channels_last, torch.contiguous_format, False),
    "w-cl": (torch.contiguous_format, torch.channels_last, False),
    "both-cl": (torch.channels_last, torch.channels_last, False),
    "x-sliced-cl": (torch.channels_last, torch.contiguous_format, True),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", list(_LAYOUTS))
@pytest.mark.parametrize("op", ["conv2d", "depthwise", "conv_transpose2d"])
def test_memory_format_follows_aten(device, backend, layout, op):
    """ATen's rule looks at both operands: channels_last output when the input or the weight is."""
    x_fmt, w_fmt, sliced = _LAYOUTS[layout]
    if op == "conv2d":
        x, w = torch.randn(2, 4, 7, 6), torch.randn(5, 4, 3, 3)
        ours, theirs = (lambda a, b: cnnkern.conv2d(a, b, padding=1)), (lambda a, b: F.conv2d(a, b, padding=1))
    elif op == "depthwise":
        x, w = torch.randn(2, 4, 7, 6), torch.randn(8, 1, 3, 3)
        ours = lambda a, b: cnnkern.conv2d(a, b, padding=1, groups=4)
        theirs = lambda a, b: F.conv2d(a, b, padding=1, groups=4)
    else:
        x, w = torch.randn(2, 4, 7, 6), torch.randn(4, 3, 3, 3)
        ours = lambda a, b: cnnkern.conv_transpose2d(a, b, stride=2)
        theirs = lambda a, b: F.conv_transpose2d(a, b, stride=2)
    x = x.to(device).contiguous(memory_format=x_fmt)
    if sliced:
        x = x[:, :, 1:, :]
    w = w.to(device).contiguous(memory_format=w_fmt)
    results = []
    for fn, ctx in ((ours, cnnkern.use_backend(backend)), (theirs, cnnkern.use_backend(None))):
        xi, wi = x.detach().requires_grad_(), w.detach().requires_grad_()
        with ctx:
            y = fn(xi, wi)
            y.backward(torch.randn_like(y))
        results.append((_fmt(y), _fmt(xi.grad), _fmt(wi.grad), y.detach()))
    assert results[0][:3] == results[1][:3]
    torch.testing.assert_close(results[0][3], results[1][3], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("kernel,dilation", [((3, 3), (1, 1)), ((2, 3), (2, 1)), ((1, 4), (1, 3))])
def test_full_padding(device, backend, kernel, dilation):
    """padding='full': dilation * (k - 1) zeros on every side, so every overlap position gives an output."""
    x = torch.randn(2, 3, 5, 6, device=device)
    w = torch.randn(4, 3, *kernel, device=device)
    wd = torch.randn(3, 1, *kernel, device=device)
    explicit = tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    with cnnkern.use_backend(backend):
        y = cnnkern.conv2d(x, w, padding="full", dilation=dilation)
        yd = cnnkern.depthwise_conv2d(x, wd, padding="full", dilation=dilation)
        module = cnnkern.nn.Conv2d(3, 4, kernel, padding="full", dilation=dilation).to(device)
        ym = module(x)
    ref = F.conv2d(x, w, padding=explicit, dilation=dilation)
    assert y.shape[2:] == tuple(s + d * (k - 1) for s, k, d in zip(x.shape[2:], kernel, dilation))
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(yd, F.conv2d(x, wd, padding=explicit, dilation=dilation, groups=3),
                               atol=1e-4, rtol=1e-4)
    assert module.padding == explicit
    torch.testing.assert_close(ym, F.conv2d(x, module.weight, module.bias, padding=explicit, dilation=dilation),
                               atol=1e-4, rtol=1e-4)
