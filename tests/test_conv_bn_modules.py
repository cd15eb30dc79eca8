"""cnnkern.nn.ConvBN / ConvBNReLU / ConvBNReLU6 / ConvBNSiLU, FusedSequential and fused_conv_bn against the
unfused torch.nn triple: state_dict keys, outputs, every gradient, running statistics and
num_batches_tracked after several steps, for each BatchNorm2d setting the modules must honour.

Two routes of the fused op run here: the CPU's automatic one (ATen's composition: this checks the mapping of
the modules onto the op's arguments) and the python route with the reference kernels (the fused op's own
statistics, normalisation and BatchNorm-backward plumbing). References: the same modules unfused in fp32
(PyTorch's own error) and in fp64.
"""

import contextlib
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_matches_reference
from torch import nn

import cnnkern.nn as cnn
from cnnkern.nn import conv_bn as conv_bn_module
from cnnkern.ops import _route

ROUTES = ["aten", "python"]
TORCH_ACT = {None: None, "relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU}
CLASSES = {None: cnn.ConvBN, "relu": cnn.ConvBNReLU, "relu6": cnn.ConvBNReLU6, "silu": cnn.ConvBNSiLU}


def route(name):
    """The python route with the reference kernels, or the automatic choice (ATen's composition)."""
    return _route.forced_route("python") if name == "python" else contextlib.nullcontext()


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the calls that reach cnnkern.conv_bn_relu from the modules."""
    calls = []
    real = conv_bn_module.conv_bn_relu

    def spy(*args, **kwargs):
        calls.append(args[14] if len(args) > 14 else kwargs.get("activation"))
        return real(*args, **kwargs)

    monkeypatch.setattr(conv_bn_module, "conv_bn_relu", spy)
    return calls


def unfused_twin(module: nn.Sequential) -> nn.Sequential:
    """The same layers as plain torch.nn modules, loaded strictly from ``module``'s state_dict."""
    conv, bn, *act = module
    c = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                  conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    b = nn.BatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    twin = nn.Sequential(c, b, *(copy.deepcopy(a) for a in act))
    twin.load_state_dict(module.state_dict(), strict=True)
    return twin.train(module.training)


def randomize(module, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if "num_batches" in name:
                continue
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.5 + (1.0 if name.endswith("1.weight") else 0.0))
    return module


def run_steps(model, x, steps, train=True):
    """Outputs and (input, parameter) gradients of each step, and the final buffers."""
    model.train(train)
    record = []
    for step in range(steps):
        xi = x.detach().clone().requires_grad_()
        y = model(xi)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(step), dtype=torch.float64).to(y)
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(y, [xi, *params], g)
        record.append([y.detach(), *grads])
    buffers = [b.detach().clone() for b in model.buffers()]
    return record, buffers


def assert_same_as_unfused(ours, x, steps=3, train=True, name=""):
    ref = unfused_twin(ours)
    ref64 = copy.deepcopy(ref).double()
    got, got_buf = run_steps(ours, x, steps, train)
    want32, buf32 = run_steps(ref, x, steps, train)
    want64, buf64 = run_steps(ref64, x.double(), steps, train)
    for step, (a, b, c) in enumerate(zip(got, want64, want32)):
        labels = ["output", "grad_input"]
        labels += [f"grad_{n}" for n, p in ours.named_parameters() if p.requires_grad]
        for label, t, t64, t32 in zip(labels, a, b, c):
            assert_matches_reference(t, t64, t32, f"{name} step {step} {label}")
    for (label, _), t, t64, t32 in zip(ours.named_buffers(), got_buf, buf64, buf32):
        if t.is_floating_point():
            assert_matches_reference(t, t64, t32, f"{name} {label}")
        else:
            assert torch.equal(t, t32) and torch.equal(t32.to(t64.dtype), t64), f"{name} {label}: {t}, {t32}"


# ------------------------------------------------------------------------------------------- modules
def test_keys_match_torchvision_and_load_strictly():
    torchvision = pytest.importorskip("torchvision")
    from torchvision.ops import Conv2dNormActivation

    for act, tv_act in ((None, None), ("relu", nn.ReLU), ("relu6", nn.ReLU6), ("silu", nn.SiLU)):
        tv = Conv2dNormActivation(8, 16, 3, 2, groups=2, activation_layer=tv_act)
        ours = CLASSES[act](8, 16, 3, 2, groups=2)
        assert list(ours.state_dict()) == list(tv.state_dict()), torchvision.__version__
        assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in tv]
        assert (ours[0].padding, ours[0].bias) == (tv[0].padding, None)
        ours.load_state_dict(randomize(tv).state_dict(), strict=True)
        tv.load_state_dict(ours.state_dict(), strict=True)
        assert isinstance(ours, nn.Sequential) and isinstance(ours[0], cnn.Conv2d)
        assert f"fused=[0:{len(ours)}{' ' + act if act else ''}]" in repr(ours)


def test_constructor():
    m = cnn.ConvBNAct(4, 6, (3, 5), dilation=2, activation="silu", bias=True, eps=1e-3, momentum=None,
                      affine=False, track_running_stats=False, inplace=False)
    assert m[0].padding == (2, 4) and m[0].bias is not None and type(m[2]) is nn.SiLU and not m[2].inplace
    assert (m[1].eps, m[1].momentum, m[1].affine, m[1].track_running_stats) == (1e-3, None, False, False)
    assert m.out_channels == 6 and type(cnn.ConvBNReLU6(3, 3)[2]) is nn.ReLU6
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        cnn.ConvBNAct(3, 3, activation="gelu")
    with pytest.raises(TypeError):
        cnn.ConvBNReLU(3, 3, activation="silu")  # the variants fix their activation


# (module kwargs, input shape); every BatchNorm2d setting and conv option the mapping must get right
CASES = {
    "k3": ({}, (4, 4, 7, 6)),
    "k1-bias": ({"kernel_size": 1, "bias": True}, (3, 4, 5, 5)),
    "s2-g2": ({"stride": 2, "groups": 2}, (4, 4, 9, 8)),
    "depthwise": ({"groups": 4, "out_channels": 8}, (4, 4, 6, 7)),
    "momentum-none": ({"momentum": None}, (4, 4, 6, 6)),
    "no-running-stats": ({"track_running_stats": False}, (4, 4, 6, 6)),
    "no-affine": ({"affine": False}, (4, 4, 6, 6)),
    "reflect": ({"padding_mode": "reflect"}, (3, 4, 6, 7)),
    "circular-dilated": ({"padding_mode": "circular", "dilation": 2}, (3, 4, 8, 7)),
}


# every case with ReLU, every activation on the first case
TRAINING = [(case, "relu") for case in CASES] + [("k3", act) for act in CLASSES if act != "relu"]


@pytest.mark.parametrize("route_name", ROUTES)
@pytest.mark.parametrize("case,act", TRAINING, ids=[f"{c}-{a}" for c, a in TRAINING])
def test_matches_unfused_training(route_name, case, act, fused_calls):
    kwargs, shape = CASES[case]
    kwargs = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, **kwargs}
    ours = randomize(CLASSES[act](**kwargs))
    x = torch.randn(shape).to(memory_format=torch.channels_last if case == "k3" else torch.contiguous_format)
    with route(route_name):
        assert_same_as_unfused(ours, x, steps=3, train=True, name=case)
    assert fused_calls == [act] * 3


@pytest.mark.parametrize("route_name", ROUTES)
@pytest.mark.parametrize("case", ["k3", "s2-g2", "no-running-stats", "no-affine", "reflect"])
@pytest.mark.parametrize("act", ["relu", None])
def test_matches_unfused_eval(route_name, case, act, fused_calls):
    """Eval: running statistics (batch statistics when there are none), gradients still flow."""
    kwargs, shape = CASES[case]
    ours = randomize(CLASSES[act](4, 6, **kwargs))
    with route(route_name):
        assert_same_as_unfused(ours, torch.randn(shape), steps=2, train=False, name=case)
        with torch.no_grad():
            y = ours.eval()(torch.randn(shape))  # no gradient wanted: the folded forward
        assert y.shape[1] == 6
    assert len(fused_calls) == 3


@pytest.mark.parametrize("route_name", ROUTES)
def test_momentum_none_is_the_cumulative_average(route_name):
    ours = randomize(cnn.ConvBNReLU(4, 6, momentum=None))
    ref = unfused_twin(ours)
    xs = [torch.randn(4, 4, 5, 5) * (i + 1) + i for i in range(4)]
    with route(route_name):
        for x in xs:
            ours(x), ref(x)
    assert ours[1].num_batches_tracked.item() == ref[1].num_batches_tracked.item() == 4
    torch.testing.assert_close(ours[1].running_mean, ref[1].running_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1].running_var, ref[1].running_var, rtol=1e-5, atol=1e-5)


def test_toggled_track_running_stats_uses_the_buffers_in_eval():
    """BatchNorm2d semantics with buffers present but track_running_stats switched off afterwards: training
    uses batch statistics and updates nothing; eval uses the (stale) buffers."""
    ours = randomize(cnn.ConvBNReLU(4, 6))
    ref = unfused_twin(ours)
    for m in (ours[1], ref[1]):
        m.track_running_stats = False
    x = torch.randn(4, 4, 6, 6)
    before = ours[1].running_mean.clone()
    torch.testing.assert_close(ours.train()(x), ref.train()(x))
    assert torch.equal(ours[1].running_mean, before) and ours[1].num_batches_tracked.item() == 0
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x))


# ------------------------------------------------------------------------------------------- fallbacks
class DoubledConv(nn.Conv2d):
    def forward(self, x):
        return 2 * super().forward(x)


class MyBN(nn.BatchNorm2d):
    pass


@pytest.mark.parametrize("change", ["conv subclass", "bn subclass", "momentum", "eps", "hook", "pre-hook",
                                    "global hook", "instance forward"])
def test_runs_unfused_when_fusing_would_differ(change, fused_calls):
    m = randomize(cnn.ConvBNReLU(4, 6))
    ref = copy.deepcopy(m)
    ref.__class__ = nn.Sequential
    fired, handle = [], None
    if change == "conv subclass":
        m[0].__class__ = ref[0].__class__ = DoubledConv
    elif change == "bn subclass":
        m[1].__class__ = ref[1].__class__ = MyBN
    elif change == "momentum":
        m[1].momentum = ref[1].momentum = 1.5  # BatchNorm takes it; the op only takes [0, 1]
    elif change == "eps":
        m[1].eps = ref[1].eps = 0.0  # (BatchNorm rejects it in training too)
        m.eval(), ref.eval()
    elif change == "hook":
        m[2].register_forward_hook(lambda *a: fired.append(1))
    elif change == "pre-hook":
        m[0].register_forward_pre_hook(lambda *a: fired.append(1))
    elif change == "global hook":
        handle = nn.modules.module.register_module_forward_hook(lambda *a: fired.append(1))
    else:
        m[1].forward = ref[1].forward = lambda x: x + 1
    x = torch.randn(2, 4, 5, 5)
    try:
        torch.testing.assert_close(m(x), ref(x))
    finally:
        if handle is not None:
            handle.remove()
    assert fused_calls == []
    assert bool(fired) == ("hook" in change)
    if change != "hook":
        return
    fired.clear()
    m._modules["2"]._forward_hooks.clear()  # without the hook the same module fuses again
    m(x)
    assert fused_calls == ["relu"] and not fired


def test_unbatched_input_and_fx_tracing_see_the_unfused_modules():
    m = cnn.ConvBNReLU(3, 4)
    with pytest.raises(ValueError, match="expected 4D input"):
        m(torch.randn(3, 5, 5))  # BatchNorm2d's own error
    class Leaves(torch.fx.Tracer):  # (cnnkern.nn.Conv2d is no torch.nn leaf for the default tracer)
        def is_leaf_module(self, module, name):
            return True

    gm = torch.fx.GraphModule(m, Leaves().trace(m))  # a proxy is no tensor: the module calls are recorded
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["0", "1", "2"]
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(gm.eval()(x), m.eval()(x))


def test_other_activation_module_runs_after_the_fused_conv_bn(fused_calls):
    m = randomize(cnn.ConvBN(4, 6))
    m.append(nn.Hardswish())
    ref = copy.deepcopy(m)
    ref.__class__ = nn.Sequential
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(m(x), ref(x))
    assert fused_calls == [None]
    y = cnn.fused_conv_bn(x, m[0], m[1], nn.Hardswish())
    torch.testing.assert_close(y, ref(x))
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        cnn.fused_conv_bn(x, m[0], m[1], "gelu")


def test_fused_conv_bn_with_names_and_modules(fused_calls):
    conv, bn = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)
    randomize(nn.Sequential(conv, bn))
    x = torch.randn(3, 4, 5, 5)
    for act, fn in (("relu", F.relu), ("relu6", F.relu6), ("silu", F.silu), (nn.ReLU6(), F.relu6)):
        conv2, bn2 = copy.deepcopy(conv), copy.deepcopy(bn)
        torch.testing.assert_close(cnn.fused_conv_bn(x, conv, bn, act), fn(bn2(conv2(x))))
        torch.testing.assert_close(bn.running_var, bn2.running_var)
    assert fused_calls == ["relu", "relu6", "silu", "relu6"]


# -------------------------------------------------------------------------------------- FusedSequential
def vgg_stack():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                         nn.MaxPool2d(2), nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6), nn.SiLU(),
                         nn.Conv2d(6, 4, 1), nn.Flatten())


@pytest.mark.parametrize("route_name", ROUTES)
def test_fused_sequential(route_name, fused_calls):
    ref = randomize(vgg_stack())
    ours = copy.deepcopy(ref)
    ours.__class__ = cnn.FusedSequential
    assert "fused=[0:3 relu, 3:5, 6:9 silu]" in repr(ours)
    x = torch.randn(4, 3, 8, 8)
    with route(route_name):
        for train in (True, False):
            ours.train(train), ref.train(train)
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(ours.forward_until(x, 5), ref[:5](x), rtol=1e-5, atol=1e-5)
    assert fused_calls == ["relu", None, "silu", "relu", None] * 2
    for a, b in zip(ours.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    ours[1] = nn.Identity()  # children changed later: the chains are found at each call
    ref[1] = nn.Identity()
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    pickle.loads(pickle.dumps(ours))  # a real class: the module pickles
    ours.__class__ = nn.Sequential


def test_compile_fullgraph_training_step():
    m = randomize(cnn.ConvBNReLU(4, 6, momentum=None))
    ref = copy.deepcopy(m)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    ref.__class__ = nn.Sequential
    x = torch.randn(3, 4, 6, 6)
    for _ in range(2):
        y, y_ref = compiled(x), ref(x)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        y.square().sum().backward()
        y_ref.square().sum().backward()
    torch.testing.assert_close(m[1].running_var, ref[1].running_var, rtol=1e-5, atol=1e-5)
    assert m[1].num_batches_tracked.item() == 2
    torch.testing.assert_close(m[0].weight.grad, ref[0].weight.grad, rtol=1e-4, atol=1e-5)


def test_parametrized_conv_weight_is_fused(fused_calls):
    """A parametrized conv (weight_norm) is still a Conv2d underneath: fused, with its computed weight."""
    m = randomize(cnn.ConvBNReLU(4, 6))
    ref = unfused_twin(m)
    torch.nn.utils.parametrizations.weight_norm(m[0])
    torch.nn.utils.parametrizations.weight_norm(ref[0])
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-5)
    assert fused_calls == ["relu"]
    m(x).sum().backward()
    assert m[0].parametrizations.weight.original0.grad is not None
