"""conv_bn_relu (fused conv + BatchNorm + activation) against the unfused composition in fp64.

Every route usable here: on the CPU the automatic choice (the ATen composition itself), the python route
forced with the reference kernels (the fused op's own plumbing: statistics partials, Chan's combination,
the normalise pass, the BatchNorm backward kernels, the running-statistics update), and the Triton kernels
under the interpreter when they exist. Output, all five gradients and the running statistics.
"""

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import make_input, poison_outputs  # noqa: F401
from tolerances import TOLERANCES, assert_matches_reference

import cnnkern
from cnnkern.ops import _route
from cnnkern.ops.registry import BACKENDS
from cnnkern.reference.conv_bn_relu import conv_bn_relu as unfused


def _triton_fused():
    why = cnnkern.backend_status()["triton"]
    if why is None and BACKENDS["triton"].module("conv_bn_relu") is None:
        why = "the Triton conv_bn_relu kernels are not built yet"
    return why


ROUTES = [
    pytest.param("aten", id="aten"),
    pytest.param("python", id="python-reference"),
    pytest.param("triton", id="triton", marks=pytest.mark.skipif(_triton_fused() is not None,
                                                                   reason=f"triton: {_triton_fused()}")),
]


def _run_route(route, fn):
    if route == "aten":
        return fn()
    if route == "python":
        with _route.forced_route("python"):
            return fn()
    with cnnkern.use_backend("triton"):
        return fn()


# (N, C_in, H, W), C_out, kernel, stride, groups
SHAPES = [
    pytest.param((2, 4, 7, 6), 6, 3, 1, 1, id="k3"),
    pytest.param((2, 4, 7, 6), 6, 3, 2, 2, id="k3-s2-g2"),
    pytest.param((3, 5, 5, 4), 7, 1, 1, 1, id="k1"),
    pytest.param((2, 4, 6, 7), 8, 3, 2, 4, id="depthwise-m2"),
]


def _operands(shape, c_out, kernel, groups, dtype, layout, bias, affine):
    x = make_input(shape, dtype, "cpu", layout)
    w = (torch.randn(c_out, shape[1] // groups, kernel, kernel) / (shape[1] // groups * kernel ** 2) ** 0.5)
    bn_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    b = torch.randn(c_out).to(dtype) if bias else None
    gamma = (torch.rand(c_out) + 0.5).to(bn_dtype) if affine else None
    beta = torch.randn(c_out).to(bn_dtype) if affine else None
    rm, rv = torch.randn(c_out).to(bn_dtype), (torch.rand(c_out) + 0.5).to(bn_dtype)
    return x, w.to(dtype), b, gamma, beta, rm, rv


def _grads(fn, leaves, seed=1):
    leaves = [t.detach().requires_grad_() if t is not None else None for t in leaves]
    y = fn(*leaves)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y)
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, present, g))
    return y, [next(grads) if t is not None else None for t in leaves]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("shape,c_out,kernel,stride,groups", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_matches_unfused(poison_outputs, route, shape, c_out, kernel, stride, groups, dtype, layout,  # noqa: F811
                         training):
    # ReLU's and ReLU6's kinks: in fp16/bf16 the rounding of an element close to a kink can flip its mask
    # against the fp64 reference (a whole gradient value apart), so the 16-bit runs take the smooth
    # activations and the masks are checked in fp32.
    choices = ("relu", "relu6", "silu", None) if dtype == torch.float32 else ("silu", None)
    activation = choices[(shape[0] + kernel + groups) % len(choices)]
    x, w, b, gamma, beta, rm, rv = _operands(shape, c_out, kernel, groups, dtype, layout, bias=groups != 4,
                                             affine=kernel != 1)
    pad = kernel // 2
    rm_ours, rv_ours = rm.clone(), rv.clone()

    def ours(x, w, b, gamma, beta):
        return cnnkern.conv_bn_relu(x, w, b, gamma, beta, rm_ours, rv_ours, training, 0.1, 1e-5, stride, pad, 1,
                                    groups, activation)

    y, grads = _run_route(route, lambda: _grads(ours, [x, w, b, gamma, beta]))
    refs = []
    for dt in (torch.float64, dtype):
        rm_ref, rv_ref = rm.clone().to(torch.float64 if dt == torch.float64 else rm.dtype), rv.clone().to(
            torch.float64 if dt == torch.float64 else rv.dtype)

        def ref(x, w, b, gamma, beta, rm_ref=rm_ref, rv_ref=rv_ref, dt=dt):
            return unfused(x, w, b, gamma, beta, rm_ref, rv_ref, training, 0.1, 1e-5, stride, pad, 1, groups,
                           activation)

        cast = [None if t is None else t.detach().to(dt if t.dtype == dtype else
                                                     (torch.float64 if dt == torch.float64 else t.dtype))
                for t in (x, w, b, gamma, beta)]
        refs.append((*_grads(ref, cast), rm_ref, rv_ref))
    (y64, g64, rm64, rv64), (ydt, gdt, _, _) = refs
    assert y.dtype == dtype and y.shape == y64.shape
    want_cl = layout == "channels_last"
    assert y.is_contiguous(memory_format=torch.channels_last if want_cl else torch.contiguous_format)
    assert_matches_reference(y, y64, ydt, "output")
    for name, got, want, theirs in zip(("x", "weight", "bias", "bn_weight", "bn_bias"), grads, g64, gdt):
        if want is None:
            continue
        if name == "bias" and training:
            # In training BatchNorm removes the conv's bias, so its gradient is exactly zero: a sum of terms
            # that cancel. An error bound relative to the (zero) result is meaningless; bound it by the size
            # of the terms (the weight gradient's scale) and by twice ATen's own error.
            atol = TOLERANCES[dtype][0] * max(1.0, g64[1].abs().max().item())
            ours, aten = (got.double() - want).abs().max().item(), (theirs.double() - want).abs().max().item()
            assert ours <= 2 * aten + atol, f"grad bias: {ours:.3e} vs ATen's {aten:.3e} (+{atol:.1e})"
            continue
        # fp32 BatchNorm parameters with fp16/bf16 activations: their gradients are sums of 16-bit values, so
        # they are judged at the activations' precision (ATen's own error, checked by the 2x rule, is alike).
        assert_matches_reference(got.to(dtype), want, theirs, f"grad {name}")
    if training:  # (fp32 statistics of 16-bit activations: judged at the activations' precision, as above)
        assert_matches_reference(rm_ours.to(dtype), rm64, None, "running_mean")
        assert_matches_reference(rv_ours.to(dtype), rv64, None, "running_var")
    else:
        assert torch.equal(rm_ours, rm) and torch.equal(rv_ours, rv)


@pytest.mark.parametrize("route", ROUTES)
def test_statistics_keep_a_small_spread_under_a_large_mean(route):
    """Channels whose values are 1e4 +- 1 over many pixels: a one-pass sum of squares would lose the
    variance in fp32; the per-tile Welford + Chan combination must keep it."""
    x = torch.randn(8, 3, 24, 24)
    w = torch.randn(4, 3, 1, 1) * 0.3
    b = torch.full((4,), 1.0e4)
    rm, rv = torch.zeros(4), torch.ones(4)
    out = _run_route(route, lambda: cnnkern.conv_bn_relu(x, w, b, None, None, rm, rv, True, 1.0, 1e-5,
                                                         activation=None))
    y64 = F.conv2d(x.double(), w.double(), b.double())
    var64 = y64.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(rv.double(), var64, rtol=2e-3, atol=0)
    torch.testing.assert_close(rm.double(), y64.mean((0, 2, 3)), rtol=1e-6, atol=0)
    ref = (y64 - y64.mean((0, 2, 3), keepdim=True)) / (y64.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(out.double(), ref, atol=5e-3, rtol=0)


@pytest.mark.parametrize("route", ROUTES)
def test_cumulative_average_and_no_running_stats(route):
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    rm, rv, nbt = torch.zeros(4), torch.ones(4), torch.zeros((), dtype=torch.long)
    bn = torch.nn.BatchNorm2d(4, momentum=None, affine=False)
    for step in range(3):
        xs = x + step
        _run_route(route, lambda xs=xs: cnnkern.conv_bn_relu(xs, w, None, None, None, rm, rv, True, None,
                                                              num_batches_tracked=nbt))
        bn(F.conv2d(xs, w))
    torch.testing.assert_close(rm, bn.running_mean)
    torch.testing.assert_close(rv, bn.running_var)
    assert int(nbt) == 3 == int(bn.num_batches_tracked)
    # Training without running statistics normalises with the batch's and updates nothing.
    y = _run_route(route, lambda: cnnkern.conv_bn_relu(x, w, None, None, None, None, None, True))
    torch.testing.assert_close(y, F.relu(F.batch_norm(F.conv2d(x, w), None, None, training=True)), atol=1e-5,
                               rtol=1e-5)


@pytest.mark.parametrize("route", ROUTES)
def test_padding_strings_and_unbatched(route):
    x, w = torch.randn(3, 6, 5), torch.randn(4, 3, 2, 3)
    rm, rv = torch.zeros(4), torch.ones(4)
    for padding in ("same", "valid", "full"):
        y = _run_route(route, lambda padding=padding: cnnkern.conv_bn_relu(x, w, None, None, None, rm, rv, False,
                                                                           padding=padding))
        explicit = {"same": "same", "valid": 0, "full": (1, 2)}[padding]
        ref = F.relu(F.batch_norm(F.conv2d(x.unsqueeze(0), w, padding=explicit), rm, rv, None, None, False))[0]
        torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


BAD = [
    pytest.param({"bn_weight": torch.ones(5)}, RuntimeError, r"bn_weight.*4 elements.*\[5\]", id="bn-size"),
    pytest.param({"running_mean": torch.zeros(3)}, RuntimeError, r"running_mean.*4 elements", id="stats-size"),
    pytest.param({"eps": 0.0}, ValueError, r"eps must be a positive", id="eps-zero"),
    pytest.param({"eps": -1e-5}, ValueError, r"eps must be a positive", id="eps-negative"),
    pytest.param({"activation": "gelu"}, ValueError, r"unknown activation 'gelu'", id="activation"),
    pytest.param({"running_var": torch.ones(4, dtype=torch.float64)}, RuntimeError,
                 r"running_var has dtype torch.float64", id="stats-dtype"),
    pytest.param({"running_mean": None}, RuntimeError, r"both be given or both be None", id="half-stats"),
    pytest.param({"running_mean": None, "running_var": None, "training": False}, RuntimeError,
                 r"running_mean must be defined in evaluation mode", id="eval-no-stats"),
    pytest.param({"momentum": 1.5}, ValueError, r"momentum must be a number in \[0, 1\]", id="momentum"),
    pytest.param({"momentum": None}, ValueError, r"needs num_batches_tracked", id="momentum-none"),
    pytest.param({"weight": torch.randn(4, 2, 3, 3)}, RuntimeError, r"expected input\[2, 3, 5, 5\] to have 2",
                 id="conv-channels"),
]


@pytest.mark.parametrize("change,exc,match", BAD)
def test_bad_input(change, exc, match):
    args = {"x": torch.randn(2, 3, 5, 5), "weight": torch.randn(4, 3, 3, 3), "bias": None,
            "bn_weight": torch.ones(4), "bn_bias": torch.zeros(4), "running_mean": torch.zeros(4),
            "running_var": torch.ones(4), "training": True}
    args.update(change)
    with pytest.raises(exc, match=match):
        cnnkern.conv_bn_relu(**args)


def test_single_value_per_channel_in_training_is_an_error():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        cnnkern.conv_bn_relu(torch.randn(1, 3, 3, 3), torch.randn(4, 3, 3, 3), None, None, None, None, None, True)


@pytest.mark.parametrize("training", [True, False])
def test_opcheck(training):
    x, w, b = torch.randn(2, 3, 5, 4), torch.randn(4, 3, 3, 3), torch.randn(4)
    gamma, beta = torch.rand(4) + 0.5, torch.randn(4)
    args = (x.requires_grad_(), w, b, gamma, beta, torch.zeros(4), torch.ones(4), training, 1e-5, [1, 1],
            [1, 1, 1, 1], [1, 1], 1, "relu")
    with _route.forced_route("python"):
        torch.library.opcheck(torch.ops.cnnkern.conv_bn_relu.default, args)


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(6, 3, 3, 3) * 0.3)
        self.gamma = torch.nn.Parameter(torch.rand(6) + 0.5)
        self.beta = torch.nn.Parameter(torch.randn(6))
        self.register_buffer("rm", torch.zeros(6))
        self.register_buffer("rv", torch.ones(6))

    def forward(self, x):
        return cnnkern.conv_bn_relu(x, self.w, None, self.gamma, self.beta, self.rm, self.rv, self.training,
                                    stride=2, padding=1, activation="silu")


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(compile_backend):
    torch._dynamo.reset()
    eager, compiled_model = _Block(), _Block()
    compiled_model.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 9, 8)
    with _route.forced_route("python"):
        out_e = eager(x)
        out_e.sum().backward()
        compiled = torch.compile(compiled_model, fullgraph=True, backend=compile_backend)
        out_c = compiled(x)
        out_c.sum().backward()
    torch.testing.assert_close(out_c, out_e, atol=1e-5, rtol=1e-5)
    for (name, p_c), p_e in zip(compiled_model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p_c.grad, p_e.grad, atol=1e-4, rtol=1e-4, msg=name)
    torch.testing.assert_close(compiled_model.rm, eager.rm)
    torch.testing.assert_close(compiled_model.rv, eager.rv)


def test_autocast_runs_in_the_autocast_dtype():
    x, w = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3)
    rm, rv = torch.zeros(4), torch.ones(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = cnnkern.conv_bn_relu(x, w, None, torch.ones(4), torch.zeros(4), rm, rv, True)
    assert y.dtype == torch.bfloat16 and rm.dtype == torch.float32
    ref = F.relu(F.batch_norm(F.conv2d(x, w), None, None, training=True))
    torch.testing.assert_close(y.float(), ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.values[0] != "aten"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_save_policies_keep_what_they_say_and_agree(route, training, monkeypatch):
    """"recompute" keeps no activation of the output's size for backward (only the input; the conv output is
    recomputed), "output" keeps the conv output; both give the same gradients (and the fp64 reference's)."""
    import importlib

    op = importlib.import_module("cnnkern.ops.conv_bn_relu")  # the module (the package exports the function)

    x, w, b, gamma, beta, rm, rv = _operands((2, 4, 7, 6), 6, 3, 1, torch.float32, "nchw", True, True)
    leaves = (x, w, b, gamma, beta)

    def run(policy):
        monkeypatch.setattr(op, "SAVE", policy)
        saved = []

        def pack(t):
            saved.append(t)
            return t

        def fn(x, w, b, gamma, beta):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                return cnnkern.conv_bn_relu(x, w, b, gamma, beta, rm.clone(), rv.clone(), training, padding=1)

        y, grads = _run_route(route, lambda: _grads(fn, leaves))
        return y, grads, saved

    y_r, grads_r, saved_r = run("recompute")
    y_o, grads_o, saved_o = run("output")
    out_shape = y_r.shape
    assert not any(t.shape == out_shape for t in saved_r), [tuple(t.shape) for t in saved_r]
    assert any(t.shape == out_shape for t in saved_o), [tuple(t.shape) for t in saved_o]
    assert any(t.shape == x.shape for t in saved_r)
    torch.testing.assert_close(y_r, y_o, rtol=0, atol=0)
    for g_r, g_o in zip(grads_r, grads_o):
        torch.testing.assert_close(g_r, g_o, rtol=1e-6, atol=1e-6)
    _, grads64 = _grads(lambda x, w, b, g, be: unfused(x, w, b, g, be, rm.double(), rv.double(), training, padding=1),
                        [t.double() for t in leaves])
    for g_r, g64 in zip(grads_r, grads64):
        torch.testing.assert_close(g_r.double(), g64, rtol=1e-4, atol=1e-4)
