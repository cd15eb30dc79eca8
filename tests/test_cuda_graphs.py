"""CUDA graphs: every bundled model, and torchvision models converted with ``cnnkern.convert``, can be captured
in a ``torch.cuda.CUDAGraph`` and replayed (eval forward, and a whole training step with static inputs), and
run under ``torch.compile(mode="reduce-overhead")``; the ops never synchronize the host (GPU only).

What a capture proves: ``torch.cuda.graph`` captures in the global mode, where a host synchronization, a
device-to-host copy and a ``cudaMalloc`` outside PyTorch's caching allocator all fail the capture; replay
runs no Python, so replaying with new data in the static inputs and comparing with an eager call on the
same data shows nothing was read from Python state at capture time (a frozen scalar, a cached pointer).
Warm-up runs every kernel of the captured work once on a side stream first (PyTorch's recipe): plans,
Triton compilation and autotuning (which synchronizes to time its candidates) happen there, not during the
capture. The CPU-side counterpart that needs no GPU is tests/test_no_sync.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import cnnkern

pytestmark = pytest.mark.gpu

DTYPE = torch.bfloat16
CL = torch.channels_last
BATCH, SIZE, CLASSES = 4, 64, 10
WARMUP = 3
MODELS = cnnkern.models.list_models()
CONVERTED = ["resnet18", "mobilenet_v2", "shufflenet_v2_x1_0"]  # torchvision models, convs swapped in place
FORCED_TRITON = ["mobilenet_v2", "shufflenet_v2_x1_0"]  # the Triton kernels' capture, on the issue's models


def _model(source: str, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if source == "converted":
        torchvision = pytest.importorskip("torchvision")
        model = getattr(torchvision.models, name)(num_classes=CLASSES)
        cnnkern.convert(model)
    else:
        model = cnnkern.models.get_model(name, num_classes=CLASSES)
    return model.to(device="cuda", dtype=DTYPE, memory_format=CL)


def _images(seed: int) -> torch.Tensor:
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(BATCH, 3, SIZE, SIZE, device="cuda", generator=g).to(DTYPE).contiguous(memory_format=CL)


def _labels(seed: int) -> torch.Tensor:
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(0, CLASSES, (BATCH,), device="cuda", generator=g)


def _warm_up(fn) -> None:
    """Run ``fn`` WARMUP times on a side stream, as torch.cuda.graph's documentation prescribes."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = expected.float().abs().max().clamp_min(1e-6)
    err = ((actual.float() - expected.float()).abs().max() / scale).item()
    assert err <= 2e-2, f"{what}: replay differs from eager by {err:.2e} (relative to max |eager|)"


CASES = ([pytest.param("bundled", n, None, id=f"bundled-{n}") for n in MODELS]
         + [pytest.param("converted", n, None, id=f"converted-{n}") for n in CONVERTED]
         + [pytest.param("bundled", n, "triton", id=f"bundled-{n}-triton") for n in FORCED_TRITON])


@pytest.mark.parametrize(("source", "name", "backend"), CASES)
def test_eval_forward_capture_and_replay(source, name, backend):
    model = _model(source, name).eval()
    static_x = _images(0)
    with cnnkern.use_backend(backend), torch.no_grad():
        _warm_up(lambda: model(static_x))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = model(static_x)
        for seed in (1, 2):  # new data in the static input: the replay must follow it
            x = _images(seed)
            static_x.copy_(x)
            graph.replay()
            expected = model(x)
            torch.cuda.synchronize()
            _close(static_y, expected, f"{name} logits (input {seed})")


@pytest.mark.parametrize(("source", "name", "backend"), CASES)
def test_train_step_capture_and_replay(source, name, backend):
    """Forward, fp32 cross-entropy, backward and an SGD step with momentum, captured as one graph (PyTorch's
    whole-network recipe: grads set to None before capture so backward allocates them from the graph's
    pool). Each replay is compared with the same step run eagerly on a copy of the model and optimizer taken
    before the capture: loss, and then every parameter and BatchNorm buffer."""
    model = _model(source, name).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    static_x, static_y = _images(0), _labels(0)

    def step(m, o, x, y):
        o.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x).float(), y)
        loss.backward()
        o.step()
        return loss

    with cnnkern.use_backend(backend):
        _warm_up(lambda: step(model, opt, static_x, static_y))  # also creates the momentum buffers
        twin, twin_opt = copy.deepcopy((model, opt))  # one memo: twin_opt holds twin's parameters
        opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = F.cross_entropy(model(static_x).float(), static_y)
            static_loss.backward()
            opt.step()
        for seed in (1, 2):
            x, y = _images(seed), _labels(seed)
            static_x.copy_(x)
            static_y.copy_(y)
            graph.replay()
            eager_loss = step(twin, twin_opt, x, y)
            torch.cuda.synchronize()
            _close(static_loss, eager_loss, f"{name} loss (step {seed})")
            mine, theirs = model.state_dict(), twin.state_dict()
            for key, value in theirs.items():
                if value.is_floating_point():
                    _close(mine[key], value, f"{name} {key} after step {seed}")
                else:
                    assert torch.equal(mine[key], value), f"{name} {key} after step {seed}"


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x1_0", "shufflenet_v1", "resnet18"])
def test_compile_reduce_overhead(name):
    """``torch.compile(mode="reduce-overhead")`` (inductor's CUDA graph trees) runs the cnnkern model with no
    cudagraph skip (a skip means inductor found something it cannot capture, e.g. a CPU tensor or an op
    tagged unsafe) and matches eager."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model("bundled", name).eval()
    compiled = torch.compile(model, mode="reduce-overhead")
    with torch.no_grad():
        for seed in range(4):  # the first calls record, later ones replay
            x = _images(seed)
            out = compiled(x).clone()  # outputs of a graph tree are overwritten by the next replay
            _close(out, model(x), f"{name} compiled logits (input {seed})")
    assert counters["inductor"]["cudagraph_skips"] == 0, dict(counters["inductor"])
    torch._dynamo.reset()


OPS = ["conv2d", "depthwise_conv2d", "group_pointwise_conv2d", "shuffle_cat_pointwise", "conv_transpose2d",
       "channel_shuffle"]


def _op_calls():
    """Each op forward + backward on small CUDA tensors (the cases of tests/test_no_sync.py)."""
    def t(*shape):
        return torch.randn(*shape, device="cuda", dtype=DTYPE).contiguous(
            memory_format=CL if len(shape) == 4 else torch.contiguous_format).requires_grad_(True)

    x, half, w3, b, dw, pw = t(2, 16, 9, 9), t(2, 16, 9, 9), t(16, 16, 3, 3), t(16), t(32, 1, 3, 3), t(32, 8, 1, 1)
    w1 = t(16, 16, 1, 1)
    return {
        "conv2d": (lambda: cnnkern.conv2d(x, w3, b, 1, 1), (x, w3, b)),
        "depthwise_conv2d": (lambda: cnnkern.depthwise_conv2d(x, dw, None, 2, 1), (x, dw)),
        "group_pointwise_conv2d": (lambda: cnnkern.group_pointwise_conv2d(x, pw, None, 2, 2), (x, pw)),
        "shuffle_cat_pointwise": (lambda: cnnkern.shuffle_cat_pointwise(half, x, w1, relu=True), (half, x, w1)),
        "conv_transpose2d": (lambda: cnnkern.conv_transpose2d(x, w3, b, 2, 1, 1), (x, w3, b)),
        "channel_shuffle": (lambda: cnnkern.channel_shuffle(x, 4), (x,)),
    }


@pytest.mark.parametrize("backend", ["cuda", "triton", "reference"])
@pytest.mark.parametrize("op", OPS)
def test_op_does_not_sync_on_gpu(op, backend):
    """``torch.cuda.set_sync_debug_mode("error")`` fails any synchronizing CUDA call (also those made from
    C++), after a warm-up call."""
    why = cnnkern.backend_status().get(backend)
    if why:
        pytest.skip(f"{backend} backend unavailable: {why}")
    call, leaves = _op_calls()[op]

    def fwd_bwd():
        out = call()
        return torch.autograd.grad(out, leaves, torch.ones_like(out))

    with cnnkern.use_backend(backend):
        try:
            fwd_bwd()
        except RuntimeError as e:
            if "was forced but cannot run" in str(e):
                pytest.skip(str(e).splitlines()[0])
            raise
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            fwd_bwd()
        finally:
            torch.cuda.set_sync_debug_mode("default")
