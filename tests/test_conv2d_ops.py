"""The custom-op contract: opcheck on every op, torch.compile(fullgraph=True), the autograd Function."""

import pytest
import torch
import torch.nn.functional as F
from _conv_cases import backend_params
from torch import nn

import cnnkern


def _conv_args(device, dtype=torch.float32, requires_grad=True):
    x = torch.randn(2, 4, 6, 5, device=device, dtype=dtype, requires_grad=requires_grad)
    w = torch.randn(6, 2, 3, 2, device=device, dtype=dtype, requires_grad=requires_grad)
    b = torch.randn(6, device=device, dtype=dtype, requires_grad=requires_grad)
    # Already-normalised op arguments: 4-sided padding (asymmetric here, as 'same' with even kernels).
    return x, w, b, [1, 2], [1, 1, 0, 1], [1, 1], 2


@pytest.mark.parametrize("device,backend", backend_params())
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck_forward(device, backend, layout):
    x, w, b, stride, padding, dilation, groups = _conv_args(device)
    if layout == "channels_last":
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    with cnnkern.use_backend(backend):
        torch.library.opcheck(torch.ops.cnnkern.conv2d.default, (x, w, b, stride, padding, dilation, groups))
        torch.library.opcheck(torch.ops.cnnkern.conv2d.default, (x, w, None, stride, padding, dilation, groups))


@pytest.mark.parametrize("device,backend", backend_params())
def test_opcheck_backward_ops(device, backend):
    x, w, _, stride, padding, dilation, groups = _conv_args(device, requires_grad=False)
    y = F.conv2d(F.pad(x, (0, 1, 1, 1)), w, None, stride, 0, dilation, groups)
    g = torch.randn_like(y)
    with cnnkern.use_backend(backend):
        for channels_last in (False, True):
            torch.library.opcheck(
                torch.ops.cnnkern.conv2d_backward_input.default,
                (g, w, list(x.shape), stride, padding, dilation, groups, channels_last),
            )
        torch.library.opcheck(
            torch.ops.cnnkern.conv2d_backward_weight.default,
            (g, x, list(w.shape), stride, padding, dilation, groups),
        )


def test_autograd_function_matches_functional():
    x, w, b, stride, padding, dilation, groups = _conv_args("cpu")
    y = cnnkern.Conv2dFunction.apply(x, w, b, stride, padding, dilation, groups)
    y.square().sum().backward()
    got = (y.detach(), x.grad, w.grad, b.grad)
    for t in (x, w, b):
        t.grad = None
    ref = F.conv2d(F.pad(x, (0, 1, 1, 1)), w, b, stride, 0, dilation, groups)
    ref.square().sum().backward()
    for a, e in zip(got, (ref.detach(), x.grad, w.grad, b.grad)):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


class _TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.3)
        self.b1 = nn.Parameter(torch.randn(8))
        self.w2 = nn.Parameter(torch.randn(6, 4, 2, 2) * 0.3)

    def forward(self, x):
        h = torch.relu(cnnkern.conv2d(x, self.w1, self.b1, stride=2, padding=1))
        return cnnkern.conv2d(h, self.w2, None, padding="same", groups=2)


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("device,backend", backend_params(device_backends=["reference", ("cuda", "cuda"),
                                                                           ("cuda", "triton")]))
def test_compile_fullgraph_forward_backward(device, backend, compile_backend):
    torch._dynamo.reset()
    model = _TwoConvs().to(device)
    x = torch.randn(2, 3, 9, 8, device=device)
    with cnnkern.use_backend(backend):
        eager = model(x)
        eager.sum().backward()
        eager_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        compiled = torch.compile(model, fullgraph=True, backend=compile_backend)
        out = compiled(x)
        out.sum().backward()
    torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-5)
    for got, want in zip((p.grad for p in model.parameters()), eager_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_compile_dynamic_batch_no_graph_break():
    torch._dynamo.reset()
    w = torch.randn(4, 3, 3, 3)

    def f(x):
        return cnnkern.conv2d(x, w, padding=1)

    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    for n in (1, 3):
        x = torch.randn(n, 3, 7, 5)
        torch.testing.assert_close(compiled(x), F.conv2d(x, w, padding=1), atol=1e-5, rtol=1e-5)
