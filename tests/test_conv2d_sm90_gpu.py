"""The sm_90a wgmma conv2d forward on a GPU (the first thing to run where one is lent: it has never run).

Skipped without an sm_90 GPU. The kernel is off by default and the extension reads CNNKERN_SM90_WGMMA once
per process, so the check runs in a child process with the variable set, under a timeout: a hang there is
an mbarrier count / parity problem (kernels/common/implicit_gemm_sm90.md, "What to check first"). It
compares the cnnkern_cuda forward ops (plain, fused BN + ReLU and statistics epilogues) with ATen on ResNet-50-like
layers, scaled down (3x3 and 1x1, stride 1 and 2, C_out 64 / 72 / 200 for both tile widths and the TMA's
out-of-bounds rows), fp16 and bf16. Then the input gradient, which runs on the same forward kernel, one launch
per stride phase (csrc/cuda/conv2d_dgrad_as_fwd.h): cnnkern_cuda::conv2d_bwd_input against F.conv2d's backward
on ResNet-50-like layers (3x3 p1, 1x1, a dilated 3x3, C_in 72 / 200 for both tile widths and the TMA's
out-of-bounds rows; stride 2 3x3 and 1x1 (3 zero phases), odd extents, stride 3, a 1x1 with padding whose
forward skips grad_out's border), and conv_transpose2d (DCGAN 4x4 s2 p1, a 3x3 s2 with output_padding)
against F.conv_transpose2d, channels_last, fp16 and bf16, and, under the profiler, that the sm_90a kernel is
the one that ran, 4 times for a stride-2 dgrad (a gate refusing it would otherwise pass unnoticed on the
step-1 kernel). The weight gradient's sm_90a
kernel in a child of its own (a hang or fault there does not hide the forward's result)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

# `gpu`: part of scripts/gpu_check.sh's GPU suite (tests/_outcome_log.py selects by that marker).
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability(0) != (9, 0),
    reason="needs an sm_90 GPU (H100 / H200)")]

# Under the GPU suite's per-test timeout (GPU_CHECK_TEST_TIMEOUT, 90 s), so that a hang reports its partial
# output from here rather than as a bare timeout.
CHILD_TIMEOUT_S = 80

# Both children: exit 3 (skip) when the gate refuses the kernel here; `ops`, a seed and the failure count.
PRELUDE = textwrap.dedent("""
    import sys
    import torch
    import torch.nn.functional as F
    import cnnkern
    from cnnkern._ext import extension
    gate = extension().sm90_wgmma_gate(0)
    if gate:
        print("GATE", gate)
        sys.exit(3)
    ops = torch.ops.cnnkern_cuda
    torch.manual_seed(0)
    bad = 0

    def fwd_problem(n, ci, hw, co, k, s, p, dt):
        # x, w, bias (channels-last, 16-bit), the fp32 reference output and a NaN-filled output of dtype dt
        x = torch.randn(n, ci, hw, hw, device="cuda", dtype=dt).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(co, ci, k, k, device="cuda", dtype=dt) / (ci * k * k) ** 0.5).contiguous(
            memory_format=torch.channels_last)
        b = torch.randn(co, device="cuda", dtype=dt)
        ref = F.conv2d(x.float(), w.float(), b.float(), s, p)
        out = torch.full_like(ref, float("nan"), dtype=dt).contiguous(memory_format=torch.channels_last)
        return x, w, b, ref, out

    def launches(call, kernel):
        # How many launches of kernels whose name holds `kernel` call() made, and every kernel's name.
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            call()
            torch.cuda.synchronize()
        events = prof.key_averages()
        return sum(e.count for e in events if kernel in e.key), [e.key for e in events]
""")

CHILD = PRELUDE + textwrap.dedent("""
    cases = [(8, 64, 56, 64, 3, 1, 1), (8, 128, 28, 128, 3, 2, 1), (4, 256, 14, 200, 3, 1, 1),
             (4, 512, 7, 72, 3, 1, 1), (8, 64, 56, 256, 1, 1, 0), (8, 256, 56, 64, 1, 1, 0),
             (4, 256, 28, 512, 1, 2, 0), (2, 2048, 7, 512, 1, 1, 0)]
    for dt in (torch.float16, torch.bfloat16):
        for n, ci, hw, co, k, s, p in cases:
            x, w, b, ref, out = fwd_problem(n, ci, hw, co, k, s, p, dt)
            ops.conv2d_fwd(x, w, b, out, [s, s], [p, p], [1, 1], 1)
            scale = torch.rand(co, device="cuda") + 0.5
            shift = torch.randn(co, device="cuda")
            out2 = torch.full_like(out, float("nan"))
            ops.conv2d_fwd_act(x, w, b, scale, shift, out2, [s, s], [p, p], [1, 1], 1, 1)
            torch.cuda.synchronize()
            ref2 = torch.relu(ref * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))
            tol = 2e-2 if dt == torch.bfloat16 else 4e-3
            for name, got, want in (("plain", out, ref), ("act", out2, ref2)):
                err = ((got.float() - want).abs() / (want.abs() + 1)).max().item()
                ok = torch.isfinite(got).all().item() and err <= tol
                print(dt, (n, ci, hw, co, k, s, p), name, "max rel err", err, "ok" if ok else "MISMATCH")
                bad += not ok
    # The statistics epilogue (conv2d_fwd_stats, the fused conv-BN training forward): the per-tile partials merged
    # by Chan's formula must give the moments of the stored output, both tile widths, a partial last tile.
    from cnnkern.problem.conv_bn import combine_partials
    for dt in (torch.float16, torch.bfloat16):
        for n, ci, hw, co, k, s, p in [(8, 64, 28, 64, 3, 1, 1), (4, 128, 15, 200, 3, 1, 1), (4, 256, 7, 72, 1, 1, 0)]:
            x, w, b, ref, out = fwd_problem(n, ci, hw, co, k, s, p, dt)
            partials = torch.full((ops.conv2d_fwd_stats_tiles(x, w, out), co, 3), float("nan"), device="cuda")
            ops.conv2d_fwd_stats(x, w, b, out, partials, [s, s], [p, p], [1, 1], 1)
            count, mean, var = combine_partials(partials)
            o = out.float()
            tol = 2e-2 if dt == torch.bfloat16 else 4e-3
            err = ((o - ref).abs() / (ref.abs() + 1)).max().item()
            ok = (torch.isfinite(partials).all().item() and err <= tol
                  and bool((count == o[:, 0].numel()).all())
                  and torch.allclose(mean, o.mean((0, 2, 3)), rtol=1e-4, atol=1e-4)
                  and torch.allclose(var, o.var((0, 2, 3), unbiased=False), rtol=1e-3, atol=1e-4))
            print(dt, (n, ci, hw, co, k, s, p), "stats epilogue, out max rel err", err, "ok" if ok else "MISMATCH")
            bad += not ok
    count, names = launches(lambda: ops.conv2d_fwd_stats(x, w, b, out, partials, [1, 1], [0, 0], [1, 1], 1),
                            "conv2d_fwd_sm90")
    print("stats route:", count, "sm_90a forward launches (1 expected)", names)
    bad += count != 1
    # dgrad: (n, c_in, hw, c_out, k, p, d, stride) of the forward whose input gradient is taken; stride 1 is one
    # forward, stride s one per stride phase (csrc/cuda/conv2d_dgrad_as_fwd.h), odd extents included
    dgrad_cases = [(8, 64, 56, 64, 3, 1, 1, 1), (4, 128, 28, 128, 3, 1, 1, 1), (4, 256, 14, 256, 3, 1, 1, 1),
                   (4, 512, 7, 512, 3, 1, 1, 1), (8, 256, 56, 64, 1, 0, 1, 1), (8, 64, 56, 256, 1, 0, 1, 1),
                   (2, 128, 14, 128, 3, 2, 2, 1), (4, 72, 14, 128, 3, 1, 1, 1), (2, 200, 14, 64, 3, 1, 1, 1),
                   (4, 128, 56, 128, 3, 1, 1, 2), (4, 256, 28, 512, 1, 0, 1, 2), (4, 128, 15, 128, 3, 1, 1, 2),
                   (2, 64, 13, 64, 3, 0, 1, 3), (4, 64, 14, 128, 1, 1, 1, 1)]
    for dt in (torch.float16, torch.bfloat16):
        for n, ci, hw, co, k, p, d, st in dgrad_cases:
            w = (torch.randn(co, ci, k, k, device="cuda", dtype=dt) / (co * k * k) ** 0.5).contiguous(
                memory_format=torch.channels_last)
            x = torch.zeros(n, ci, hw, hw, device="cuda", requires_grad=True)
            y = F.conv2d(x, w.float(), None, st, p, d)
            gy = torch.randn(y.shape, device="cuda", dtype=dt).contiguous(memory_format=torch.channels_last)
            (ref,) = torch.autograd.grad(y, x, gy.float())
            gx = torch.full((n, ci, hw, hw), float("nan"), device="cuda", dtype=dt).contiguous(
                memory_format=torch.channels_last)
            ops.conv2d_bwd_input(gy, w, gx, [st, st], [p, p], [d, d], 1)
            torch.cuda.synchronize()
            tol = 2e-2 if dt == torch.bfloat16 else 4e-3
            err = ((gx.float() - ref).abs() / (ref.abs() + 1)).max().item()
            ok = torch.isfinite(gx).all().item() and err <= tol
            print(dt, (n, ci, hw, co, k, p, d, st), "dgrad max rel err", err, "ok" if ok else "MISMATCH")
            bad += not ok
    # conv_transpose2d (the dgrad of its equivalent conv, with the bias): DCGAN's 4x4 s2 p1 layers, a 3x3 s2
    # decoder layer with output_padding 1
    for dt in (torch.float16, torch.bfloat16):
        for n, ci, hw, co, k, st, p, op in [(8, 512, 4, 256, 4, 2, 1, 0), (8, 256, 16, 128, 4, 2, 1, 0),
                                            (4, 128, 14, 64, 3, 2, 1, 1)]:
            x = torch.randn(n, ci, hw, hw, device="cuda", dtype=dt).contiguous(memory_format=torch.channels_last)
            w = (torch.randn(ci, co, k, k, device="cuda", dtype=dt) / (ci * k * k / 4) ** 0.5).contiguous(
                memory_format=torch.channels_last)
            b = torch.randn(co, device="cuda", dtype=dt)
            ref = F.conv_transpose2d(x.float(), w.float(), b.float(), st, p, op)
            out = torch.full(ref.shape, float("nan"), device="cuda", dtype=dt).contiguous(
                memory_format=torch.channels_last)
            ops.conv_transpose2d_fwd(x, w, b, out, [st, st], [p, p], [1, 1], 1)
            torch.cuda.synchronize()
            tol = 2e-2 if dt == torch.bfloat16 else 4e-3
            err = ((out.float() - ref).abs() / (ref.abs() + 1)).max().item()
            ok = torch.isfinite(out).all().item() and err <= tol
            print(dt, (n, ci, hw, co, k, st, p, op), "conv_transpose2d max rel err", err, "ok" if ok else "MISMATCH")
            bad += not ok
    # The route: the stride-1 dgrad must run the sm_90a forward kernel, not the step-1 dgrad kernel.
    gy = torch.randn(4, 128, 28, 28, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    gx = torch.empty_like(gy)
    count, names = launches(lambda: ops.conv2d_bwd_input(gy, w, gx, [1, 1], [1, 1], [1, 1], 1), "conv2d_fwd_sm90")
    print("dgrad route:", count, "sm_90a forward launches (1 expected)", names)
    bad += count != 1
    gx = torch.empty(4, 128, 56, 56, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    count, names = launches(lambda: ops.conv2d_bwd_input(gy, w, gx, [2, 2], [1, 1], [1, 1], 1), "conv2d_fwd_sm90")
    print("strided dgrad route:", count, "sm_90a forward launches (4 phases expected)", names)
    bad += count != 4
    sys.exit(1 if bad else 0)
""")

WGRAD_CHILD = PRELUDE + textwrap.dedent("""
    # (n, c_in, hw, c_out, k, stride, padding, dilation, grad_out as a channel slice of a wider buffer)
    cases = [(8, 64, 56, 64, 3, 1, 1, 1, False), (4, 128, 28, 128, 3, 1, 1, 1, False),
             (4, 256, 14, 200, 3, 1, 1, 1, True), (4, 512, 7, 72, 3, 1, 1, 1, False),
             (8, 64, 56, 256, 1, 1, 0, 1, False), (8, 256, 56, 64, 1, 1, 0, 1, True),
             (4, 128, 28, 128, 3, 2, 1, 1, False), (2, 128, 14, 128, 3, 1, 2, 2, False)]
    for dt in (torch.float16, torch.bfloat16):
        for n, ci, hw, co, k, s, p, d, sliced in cases:
            x = torch.randn(n, ci, hw, hw, device="cuda", dtype=dt).contiguous(memory_format=torch.channels_last)
            w = torch.zeros(co, ci, k, k, device="cuda", requires_grad=True)
            y = F.conv2d(x.float(), w, None, s, p, d)
            if sliced:
                buf = torch.randn(n, co + 8, *y.shape[2:], device="cuda", dtype=dt).contiguous(
                    memory_format=torch.channels_last)
                gy = buf[:, 8:]
            else:
                gy = torch.randn(y.shape, device="cuda", dtype=dt).contiguous(memory_format=torch.channels_last)
            (ref,) = torch.autograd.grad(y, w, gy.float())
            outs = []
            for _ in range(2):
                gw = torch.full((co, ci, k, k), float("nan"), device="cuda", dtype=dt).contiguous(
                    memory_format=torch.channels_last)
                ops.conv2d_bwd_weight(gy, x, gw, [s, s], [p, p], [d, d], 1)
                outs.append(gw)
            torch.cuda.synchronize()
            tol = 2e-2 if dt == torch.bfloat16 else 4e-3
            err = ((outs[0].float() - ref).abs().max() / ref.abs().max()).item()
            same = torch.equal(outs[0], outs[1])
            ok = torch.isfinite(outs[0]).all().item() and err <= tol and same
            print(dt, (n, ci, hw, co, k, s, p, d, sliced), "wgrad max err / max", err,
                  "bitwise repeatable" if same else "NOT REPEATABLE", "ok" if ok else "MISMATCH")
            bad += not ok
    # The route: the weight gradient must run the sm_90a kernel, not the step-1 one.
    gy = torch.randn(4, 128, 28, 28, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 128, 28, 28, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    gw = torch.empty(128, 128, 3, 3, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    count, names = launches(lambda: ops.conv2d_bwd_weight(gy, x, gw, [1, 1], [1, 1], [1, 1], 1), "conv2d_wgrad_sm90")
    print("wgrad route:", count, "sm_90a weight-gradient launches (1 expected)", names)
    bad += count != 1
    sys.exit(1 if bad else 0)
""")


def _run_child(child: str) -> None:
    env = dict(os.environ, CNNKERN_SM90_WGMMA="1")
    try:
        res = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True,
                             timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hang (> {CHILD_TIMEOUT_S} s): mbarrier protocol? partial output:\n{e.stdout}")
    if res.returncode == 3:
        pytest.skip(f"the sm_90a kernel is not routable here: {res.stdout.strip()}")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-4000:]


def test_sm90_wgmma_forward_and_stride1_dgrad_match_aten():
    _run_child(CHILD)


def test_sm90_wgmma_weight_gradient_matches_aten():
    """The sm_90a weight gradient (kernels/conv/conv2d_wgrad_sm90.cuh) against F.conv2d's weight gradient:
    both tile heights (C_out 64 / 72 / 128 / 200 / 256), 3x3 / 1x1 / strided / dilated, grad_out as an aligned
    channel slice, fp16 and bf16, bitwise equal over two calls (the split-K reduction is fixed-order), and
    under the profiler that the sm_90a kernel ran."""
    _run_child(WGRAD_CHILD)
