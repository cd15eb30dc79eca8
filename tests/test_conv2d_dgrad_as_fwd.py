"""The identity behind the stride-1 input gradient on the sm_90a forward kernel (csrc/cuda/conv2d_dgrad_as_fwd.h,
csrc/cuda/conv2d.cpp ``dgrad_on_sm90_fwd``), checked with ATen in fp64 on the CPU:

    grad_in = conv2d(grad_out, w', padding = d*(K-1) - p, dilation = d, stride 1),
    w'[c][k][r][s] = w[k][c][R-1-r][S-1-s]

for stride 1, groups 1, p <= d*(K-1) per dim, and its output is exactly H x W. With bottom/right padding p_hi
(implied by the shapes in cnnkern's ops) the forward's is d*(K-1) - p_hi = H - OH + p. The weight is built
with the same ATen calls as the C++ (flip, transpose, channels-last copy), whose layout is checked here too.
The plan function itself (refusals, shapes) is tested by the C++ target cnnkern_test_dgrad_as_fwd (ctest).
Strided input gradients: one such forward per stride phase of grad_in, with the phase's taps of w
(dgrad_phases_as_fwd; its Python mirror cnnkern.cuda.conv2d.dgrad_phases is what the explain() route uses),
checked the same way below. Needs only torch; nothing here runs a cnnkern kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnkern.cuda.conv2d import dgrad_phases
from cnnkern.problem.conv2d import conv2d_spec

# (kernel, padding, dilation), each (h, w): 3x3 and 1x1 as in ResNet-50, 'full' padding (p' = 0), no padding
# (p' = d*(K-1)), even kernels, and h != w in every field.
CASES = [
    ((3, 3), (1, 1), (1, 1)),
    ((1, 1), (0, 0), (1, 1)),
    ((3, 3), (2, 2), (1, 1)),
    ((3, 3), (0, 0), (2, 2)),
    ((3, 5), (2, 1), (2, 1)),
    ((5, 3), (0, 2), (1, 3)),
    ((2, 4), (1, 0), (3, 1)),
    ((1, 3), (0, 3), (1, 2)),
    ((4, 2), (3, 1), (1, 2)),
]


def weight_as_fwd(w: torch.Tensor) -> torch.Tensor:
    """csrc/cuda/conv2d.cpp dgrad_weight_as_fwd, in Python."""
    return torch.flip(w, [2, 3]).transpose(0, 1).contiguous(memory_format=torch.channels_last)


def _case(seed: int, k, d, c_in=5, c_out=3):
    g = torch.Generator().manual_seed(seed)
    # odd sizes, large enough that every tap reaches the interior
    h, w_ = 7 + 2 * (seed % 3), 9 + 2 * (seed % 2)
    x = torch.randn(2, c_in, h, w_, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(c_out, c_in, *k, dtype=torch.float64, generator=g)
    return g, x, w


@pytest.mark.parametrize("k, p, d", CASES)
def test_stride1_dgrad_is_a_forward_conv(k, p, d):
    for seed in range(3):
        g, x, w = _case(seed, k, d)
        y = F.conv2d(x, w, padding=p, dilation=d)
        gy = torch.randn(y.shape, dtype=torch.float64, generator=g)
        (gx,) = torch.autograd.grad(y, x, gy)
        pad2 = [d[i] * (k[i] - 1) - p[i] for i in range(2)]
        assert min(pad2) >= 0
        got = F.conv2d(gy, weight_as_fwd(w), padding=pad2, dilation=d)
        assert got.shape == x.shape  # the forward's output is exactly H x W
        torch.testing.assert_close(got, gx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k, p, d", CASES)
def test_implied_bottom_right_padding(k, p, d):
    # The op's bottom/right padding p_hi comes from the shapes (cnnkern accepts any >= 0); the forward's is
    # d*(K-1) - p_hi = H - OH + p, which the kernel gets the same way, from grad_in's extent.
    for seed in range(3):
        g, x, w = _case(seed, k, d)
        span = [d[i] * (k[i] - 1) for i in range(2)]
        p_hi = [seed % (span[i] + 1) for i in range(2)]
        y = F.conv2d(F.pad(x, (p[1], p_hi[1], p[0], p_hi[0])), w, dilation=d)
        gy = torch.randn(y.shape, dtype=torch.float64, generator=g)
        (gx,) = torch.autograd.grad(y, x, gy)
        h, w_ = x.shape[2:]
        oh, ow = y.shape[2:]
        top = [span[i] - p[i] for i in range(2)]
        bottom = [h - oh + p[0], w_ - ow + p[1]]
        assert bottom == [span[i] - p_hi[i] for i in range(2)]
        got = F.conv2d(F.pad(gy, (top[1], bottom[1], top[0], bottom[0])), weight_as_fwd(w), dilation=d)
        assert got.shape == x.shape
        torch.testing.assert_close(got, gx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [(3, 3), (1, 1), (3, 5), (7, 1)])
def test_weight_layout_is_what_the_sm90_gate_wants(k):
    # conv2d_fwd_sm90_why_not wants, per forward output channel c, one contiguous row of K = R*S*C_out elements
    # in (r, s, k) order: strides (R*S*C_out, 1, S*C_out, C_out). Values: w'[c][k][r][s] = w[k][c][R-1-r][S-1-s].
    c_out, c_in = 64, 24
    for w in (torch.randn(c_out, c_in, *k), torch.randn(c_out, c_in, *k).contiguous(memory_format=torch.channels_last)):
        w2 = weight_as_fwd(w)
        r, s = k
        assert w2.shape == (c_in, c_out, r, s)
        assert w2.stride() == (r * s * c_out, 1, s * c_out, c_out)
        want = torch.empty(c_in, c_out, r, s)
        for i in range(r):
            for j in range(s):
                want[:, :, i, j] = w[:, :, r - 1 - i, s - 1 - j].t()
        assert torch.equal(w2, want)


def test_stride2_is_not_a_plain_forward():
    # Why the plan refuses stride > 1: the same transform misses the zeros between grad_out's pixels (the
    # step-1 dgrad kernel's stride phases handle them).
    g, x, w = _case(0, (3, 3), (1, 1))
    y = F.conv2d(x, w, stride=2, padding=1)
    gy = torch.randn(y.shape, dtype=torch.float64, generator=g)
    (gx,) = torch.autograd.grad(y, x, gy)
    got = F.conv2d(gy, weight_as_fwd(w), padding=1)
    assert got.shape != gx.shape or not torch.allclose(got, gx)


# (kernel, padding, dilation, stride): ResNet-50's strided 3x3 and 1x1 (3 zero phases), DCGAN's 4x4 s2 p1,
# strides that differ per dimension, dilation sharing a factor with the stride (fewer, sparser taps), padding
# past the taps' span (the forward skips grad_out rows), stride 3.
STRIDED = [
    ((3, 3), (1, 1), (1, 1), (2, 2)),
    ((1, 1), (0, 0), (1, 1), (2, 2)),
    ((4, 4), (1, 1), (1, 1), (2, 2)),
    ((3, 5), (2, 1), (2, 1), (2, 3)),
    ((3, 3), (0, 0), (2, 2), (2, 2)),
    ((2, 3), (3, 0), (3, 2), (3, 2)),
    ((1, 3), (1, 4), (1, 1), (1, 2)),
    ((3, 3), (1, 1), (1, 1), (3, 3)),
]


@pytest.mark.parametrize("k, p, d, st", STRIDED)
def test_strided_dgrad_is_the_stride_phase_forwards(k, p, d, st):
    for seed in range(3):
        g, x, w = _case(seed, k, d)
        y = F.conv2d(x, w, stride=st, padding=p, dilation=d)
        gy = torch.randn(y.shape, dtype=torch.float64, generator=g)
        (gx,) = torch.autograd.grad(y, x, gy)
        spec = conv2d_spec(tuple(x.shape), tuple(w.shape), None, st, p, d, 1)
        got = torch.full_like(gx, float("nan"))
        phases = dgrad_phases(tuple(x.shape[2:]), tuple(y.shape[2:]), k, spec)
        for ph, pw, ry, rx in phases:
            view = got[:, :, ph::st[0], pw::st[1]]
            assert view.shape[2:] == (ry.extent, rx.extent)
            if not (ry.taps and rx.taps):
                view.zero_()
                continue
            assert min(ry.pad, rx.pad) >= 0  # the kernels take no negative padding: skipped rows instead
            w2 = torch.flip(w[:, :, ry.r0::ry.rq, rx.r0::rx.rq], [2, 3]).transpose(0, 1)
            assert w2.shape[2:] == (ry.taps, rx.taps)
            gin = gy[:, :, ry.skip:, rx.skip:]
            assert gin.shape[2:] == (ry.n_in, rx.n_in)
            out = F.conv2d(F.pad(gin, (rx.pad, rx.pad_hi, ry.pad, ry.pad_hi)), w2, dilation=(ry.dil, rx.dil))
            assert out.shape == view.shape
            view.copy_(out)
        assert len(phases) == min(st[0], x.shape[2]) * min(st[1], x.shape[3])
        torch.testing.assert_close(got, gx, rtol=1e-12, atol=1e-12)  # NaN where no phase wrote
