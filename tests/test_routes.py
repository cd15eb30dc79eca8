"""The three eager routes give the same answers: outputs, gradients, double gradients and layouts.

On the CPU the automatic choice is the ``aten`` route (ATen itself). ``forced_route('python')`` runs the
autograd Functions over the reference kernels, and ``forced_route('cuda')`` the C++ ops with their C++
autograd, whose CPU kernels are ATen-backed: so the Python-to-C++ glue of the CUDA route (argument order,
unbatched input, layouts) is tested here without a GPU. Ops without a C++ op fall back to 'python'.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from cnnkern._ext import extension
from cnnkern.ops import _route


def _r(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def _cl(t):
    return t.contiguous(memory_format=torch.channels_last)


# name -> (fn, inputs); fn takes the inputs positionally. Layout variety: channels_last inputs or weights,
# sliced views, unbatched input.
CASES = {
    "conv2d": (lambda x, w, b: cnnkern.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2)),
               lambda: (_r(2, 3, 7, 8), _r(4, 3, 3, 2), _r(4))),
    "conv2d-same-even-cl": (lambda x, w: cnnkern.conv2d(x, w, padding="same", groups=2),
                            lambda: (_cl(_r(2, 4, 6, 5)), _r(6, 2, 2, 3))),
    "conv2d-weight-cl": (lambda x, w: cnnkern.conv2d(x, w, padding="full"), lambda: (_r(1, 3, 5, 4), _cl(_r(2, 3, 3, 3)))),
    "conv2d-unbatched": (lambda x, w, b: cnnkern.conv2d(x, w, b, padding=1), lambda: (_r(3, 5, 6), _r(2, 3, 3, 3), _r(2))),
    "depthwise-sliced": (lambda x, w, b: cnnkern.depthwise_conv2d(x, w, b, stride=2, padding=1),
                         lambda: (_cl(_r(2, 3, 9, 7))[:, :, 1:, :], _r(6, 1, 3, 3), _r(6))),
    "conv_transpose2d": (lambda x, w, b: cnnkern.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                         lambda: (_r(2, 4, 4, 3), _r(4, 3, 3, 3), _r(3))),
    "conv_transpose2d-depthwise-cl": (lambda x, w: cnnkern.conv_transpose2d(x, w, stride=2, groups=3),
                                      lambda: (_cl(_r(2, 3, 3, 4)), _r(3, 1, 3, 3))),
    "group_pointwise": (lambda x, w, b: cnnkern.group_pointwise_conv2d(x, w, b, groups=2, shuffle_groups=3,
                                                                       scale=_SCALE, shift=_SHIFT, relu=True),
                        lambda: (_cl(_r(2, 4, 3, 5)), _r(6, 2, 1, 1), _r(6))),
    "channel_shuffle": (lambda x: cnnkern.channel_shuffle(x, 3), lambda: (_cl(_r(2, 6, 3, 2)),)),
    "shuffle_cat_pointwise": (lambda p, x, w: cnnkern.shuffle_cat_pointwise(p, x, w, relu=True),
                              lambda: (_r(2, 3, 4, 3), _r(2, 4, 4, 3), _r(3, 4, 1, 1))),
    "shuffle_cat_pointwise2": (lambda a, wa, b, wb: cnnkern.shuffle_cat_pointwise2(a, wa, b, wb, relu=True),
                               lambda: (_r(1, 3, 2, 3), _r(4, 3, 1, 1), _r(1, 5, 2, 3), _r(2, 5, 1, 1))),
}
_SCALE = torch.rand(6, dtype=torch.float64) + 0.5
_SHIFT = torch.randn(6, dtype=torch.float64)


def _run(fn, inputs, create_graph: bool):
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = fn(*leaves)
    g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(y, leaves, g, create_graph=create_graph)
    second = None
    if create_graph:
        total = sum((gr * gr).sum() for gr in grads)
        # (A linear op's gradient does not depend on its input: nothing to differentiate twice.)
        second = (torch.autograd.grad(total, leaves, allow_unused=True) if total.requires_grad
                  else [None] * len(leaves))
    return y, grads, second


def _fmt(t):
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@pytest.mark.parametrize("route", ["python", pytest.param("cuda", marks=pytest.mark.skipif(
    extension() is None, reason="the C++ ops need the compiled extension"))])
@pytest.mark.parametrize("case", list(CASES))
def test_route_matches_aten(route, case):
    fn, make = CASES[case]
    inputs = make()
    want = _run(fn, inputs, create_graph=True)
    with _route.forced_route(route):
        got = _run(fn, inputs, create_graph=True)
        assert cnnkern.last_choice() is not None
    y, grads, second = got
    torch.testing.assert_close(y, want[0], atol=1e-10, rtol=1e-10)
    assert _fmt(y) == _fmt(want[0]), "output memory format differs from ATen's route"
    # (Gradient layouts are compared where users see them, in .grad: tests/test_autograd_parity.py. Raw
    # autograd.grad results follow each backend's own choice, which in ATen depends on the CPU algorithm.)
    for a, b in zip(grads, want[1]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    for a, b in zip(second, want[2]):
        if b is None:
            assert a is None or not a.abs().any()
        else:
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_forced_route_restores_the_automatic_choice():
    x, w = _r(1, 2, 4, 4), _r(2, 2, 3, 3)
    with _route.forced_route("python"):
        y = cnnkern.conv2d(x.requires_grad_(), w)
        assert type(y.grad_fn).__name__ != "ConvolutionBackward0"
    y = cnnkern.conv2d(x, w)
    assert type(y.grad_fn).__name__ == "ConvolutionBackward0"  # the aten route: ATen's own autograd node


def test_reference_route_is_aten_itself():
    """On the CPU the automatic choice adds no autograd node of its own: the graph is ATen's."""
    x, w = _r(1, 2, 4, 4).requires_grad_(), _r(2, 2, 3, 3)
    assert type(cnnkern.conv2d(x, w, padding=1).grad_fn) is type(F.conv2d(x, w, padding=1).grad_fn)


@pytest.mark.parametrize("route", ["python", pytest.param("cuda", marks=pytest.mark.skipif(
    extension() is None, reason="the C++ ops need the compiled extension"))])
def test_group_pointwise_without_input_channels_is_atens_answer(route):
    x, w, b = _r(2, 0, 3, 4), _r(6, 0, 1, 1), _r(6)
    want = F.channel_shuffle(F.conv2d(x, w, b, groups=2), 2)
    with _route.forced_route(route):
        got = cnnkern.group_pointwise_conv2d(x, w, b, groups=2, shuffle_groups=2)
    assert got.shape == want.shape == (2, 0, 3, 4)
