"""The benchmark layer tables added for issue 5 (transposed convs, DeepLab dilated convs) and the plumbing
that selects them: tables vs architecture walks (and torchvision's modules where it is installed),
``--layers dilated`` parsing, the deterministic-provider flags, the transposed benchmark's problems."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import _deterministic as DET
import bench_conv2d
import bench_conv_transpose2d as BT
import bench_depthwise_conv2d
import shapes
import shapes_conv_transpose
import shapes_depthwise


def test_dilated_tables_match_walks():
    shapes.check_dilated_tables()
    shapes_depthwise.check_dilated_depthwise_tables()
    shapes_conv_transpose.check_conv_transpose_tables()
    assert {s.dilation for s in shapes.DILATED} >= {2, 4}
    assert all(s.dilation > 1 for s in shapes.DILATED + shapes_depthwise.DILATED_DEPTHWISE)


def test_dilated_tables_match_torchvision():
    pytest.importorskip("torchvision", reason="torchvision is the test extra that carries the reference models")
    assert "match torchvision" in shapes.check_dilated_against_torchvision()
    assert "matches torchvision" in shapes_depthwise.check_dilated_against_torchvision()


def test_walks_detect_a_wrong_table(monkeypatch):
    bad = shapes.DEEPLABV3_OS8[:1] + (shapes._dl("dl3os8.layer4.0.conv2", 512, 512, 65, 4, 1),) + shapes.DEEPLABV3_OS8[2:]
    monkeypatch.setattr(shapes, "DEEPLABV3_OS8", bad)
    with pytest.raises(AssertionError):
        shapes.check_dilated_tables()


@pytest.mark.parametrize("argv, dilated, rest", [
    (["--quick"], False, ["--quick"]),
    (["--layers", "3x3", "--quick"], False, ["--layers", "3x3", "--quick"]),
    (["--layers", "dilated", "--mode", "fwd"], True, ["--mode", "fwd"]),
    (["--layers=dilated,aspp"], True, ["--layers", "aspp"]),
    (["--layers", "dilated", "--layers", "dl3os16"], True, ["--layers", "dl3os16"]),
])
def test_split_dilated(argv, dilated, rest):
    assert DET.split_dilated(argv) == (dilated, rest)


def _listed(main, argv) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--list", "--cpu", *argv]) == 0
    return [line.split()[0] for line in out.getvalue().splitlines() if line.strip()]


def test_layer_selection_keeps_default_tables():
    assert _listed(bench_conv2d.main, []) == [s.name for s in shapes.RESNET50]
    assert not any(n.startswith("dl3") for n in _listed(bench_conv2d.main, ["--layers", "3x3"]))
    assert _listed(bench_conv2d.main, ["--layers", "dilated"]) == [s.name for s in shapes.DILATED]
    assert _listed(bench_conv2d.main, ["--layers", "dilated,aspp"]) == [
        s.name for s in shapes.DILATED if "aspp" in s.name]
    assert _listed(bench_depthwise_conv2d.main, []) == [s.name for s in shapes_depthwise.DEPTHWISE]
    assert _listed(bench_depthwise_conv2d.main, ["--layers", "dilated"]) == [
        s.name for s in shapes_depthwise.DILATED_DEPTHWISE]


def test_det_provider_context_sets_and_restores_flags():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    with DET.provider_context("cudnn-det"):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic) == before
    with DET.provider_context("cnnkern-triton"):
        assert torch.are_deterministic_algorithms_enabled() == before[0]


@pytest.mark.parametrize("name", ["dcgan.up4", "dec.k3.64", "dcgan.proj"])
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_conv_transpose_problem(name, layout):
    s = next(s for s in shapes_conv_transpose.CONV_TRANSPOSE if s.name == name)
    s = BT.D.reduce_for_cpu(BT.SPEC, s)
    x, w, dy, ref = BT.make_problem(s, 2, torch.float32, layout, True, torch.float64, torch.device("cpu"), 3)
    assert w.shape == (s.cin, s.cout // s.groups, s.k, s.k)
    assert dy.shape == (2, s.cout, s.out_hw, s.out_hw)
    y = BT.eager_call(s)(x, w)
    assert y.shape == ref[0].shape == dy.shape
    torch.testing.assert_close(y.double(), ref[0], rtol=1e-4, atol=1e-4)
    dx, dw = torch.autograd.grad(y, (x, w), dy)
    torch.testing.assert_close(dx.double(), ref[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dw.double(), ref[2], rtol=1e-4, atol=1e-4)
    # FLOPs are those of the conv2d whose input gradient this transposed conv is.
    flops, _ = BT.counts(s, 2, 4, False)
    conv_flops = 2 * 2 * s.hw * s.hw * s.cin * s.k * s.k * (s.cout // s.groups)
    assert flops == conv_flops
    xg = torch.nn.grad.conv2d_input(y.shape, w, x.detach(), s.stride, s.padding, s.dilation, s.groups)
    torch.testing.assert_close(xg, F.conv_transpose2d(x.detach(), w.detach(), None, s.stride, s.padding,
                                                      s.output_padding, s.groups, s.dilation))
