#!/usr/bin/env python
"""Compile every Triton kernel of cnnkern/triton for sm_90 (H100/H200) on a machine without a GPU.

The Triton backend is tested on the CPU under the interpreter, which never runs Triton's compiler: a kernel
that cannot be lowered for a real GPU (a dot shape or dtype the target lacks, a tile past the shared-memory
limit, a type error only codegen sees) would first show up on a GPU. This script finds those here.

How the launches are found: small problems go through the public ops (forward and backward, every dtype,
layout, bias/epilogue flag, kernel family) with the Triton backend forced on CPU tensors. Triton's launch
is intercepted: each launch is bound exactly as ``JITFunction.run`` binds it for an sm_90 target (argument
types, int specialisation, constexprs), every autotune config an sm_90 device can reach for the launch's
dtype is added (the tests and benchmarks reach all of them on large problems; with --hopper, the configs
the autotuner's own pruning keeps for the problem on an H100/H200), and nothing is executed. Large-tensor launches (INT64
indexing) come from untouched virtual allocations. Each distinct specialisation is then compiled with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))``; registers come from cuobjdump,
spills from ptxas -v, shared memory from Triton's metadata.

Which launches are compiled (``--level``): ``pairs`` (default) covers every pair of factor values seen
together (dtype x autotune config, INT64 x layout, flag x flag, ...); ``quick`` covers every single value
plus every dtype with the largest tile (for CI); ``combos`` every combination; ``all`` every distinct
launch. ``--full`` widens the workload to every kernel size, stride and multiplier the tests use.

Exit status: 1 if any compile fails (or, with --strict, if a config needs more shared memory than sm_90
has: the autotuner skips such a config when it benchmarks, but a launch that has only that config left
raises OutOfResources).

Run from the repository root:  python scripts/triton_sm90_check.py [-j N] [--level L] [--full] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

# Kernels must be JITFunctions with their GPU autotune configs, which are chosen when the kernel modules are
# imported: the interpreter must be off before triton or cnnkern is imported.
os.environ.pop("TRITON_INTERPRET", None)

import torch
import triton
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.compiler import compile as triton_compile
from triton.compiler.compiler import make_backend
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction, create_function_from_signature

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from triton_sm90_rules import (
    HOPPER_FMA_KERNELS,
    PTX_KINDS,
    element,
    fma_violations,
    hopper_tile_violations,
    hopper_violations,
    ptx_counts,
    tile_of,
)

import cnnkern

TARGET = GPUTarget("cuda", 90, 32)
SM90_MAX_SMEM = 232448  # bytes of shared memory one block may use on sm_90 (227 KiB)
# Constexprs that only size loops or index constants (kernel taps, split counts); by default one value each.
SHAPE_CONSTEXPRS = {"KH", "KW", "SPLIT_K", "BLOCK_T"}


# --------------------------------------------------------------------------------------------- recording
@dataclass
class Launch:
    fn: JITFunction
    signature: dict
    constexprs: dict
    attrs: dict
    options: object
    origin: str
    key: tuple = field(default=())

    @property
    def name(self) -> str:
        return self.fn.__name__

    def named_constexprs(self) -> dict:
        """Declared constexpr parameters by name (ints specialised to constants are left out)."""
        names = [p.name for p in self.fn.params]
        declared = {p.name for p in self.fn.params if p.is_constexpr}
        out = {}
        for path, value in self.constexprs.items():
            name = names[path[0]]
            if name in declared:
                out[name] = str(value)
        return out

    def config(self) -> str:
        o = self.options
        return f"warps={o.num_warps} stages={o.num_stages}"


_BACKEND = make_backend(TARGET)
_binders: dict[int, object] = {}
_records: dict[tuple, Launch] = {}
_origin = ["?"]


def _recording_run(self, *args, grid, warmup, **kwargs):
    """JITFunction.run for an sm_90 target, up to (not including) compile and launch."""
    kwargs["debug"] = kwargs.get("debug", self.debug) or knobs.runtime.debug
    if hasattr(knobs.compilation, "instrumentation_mode"):
        kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    binder = _binders.get(id(self))
    if binder is None:
        binder = _binders[id(self)] = create_function_from_signature(self.signature, self.params, _BACKEND)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = self._pack_args(_BACKEND, kwargs, bound_args, specialization, options)
    key = (self.__name__, tuple(sorted(signature.items())), repr(sorted(constexprs.items())),
           repr(sorted(attrs.items())), repr(sorted(options.__dict__.items())))
    if key not in _records:
        _records[key] = Launch(self, signature, constexprs, attrs, options, _origin[0], key)


_PRUNE = [False]
# kernel name -> the shared-memory estimate its own early prune drops tiles by (the prune function's
# smem_bytes attribute, (tile, dtype) -> bytes); kernels without one are held to tiles.tile_smem_bytes.
_SMEM_ESTIMATES: dict[str, object] = {}


def _recording_autotune(self, *args, **kwargs):
    """Every config, not only the best one: large problems on the GPU reach all of them. With ``_PRUNE`` on
    (--hopper), the configs the autotuner's own early prune keeps for this launch on an sm_90 device, i.e.
    those an H100/H200 benchmarks for the problem. A config's pre_hook runs first, as the autotuner runs it
    (it sizes the tensor descriptors to the config's tile)."""
    self.nargs = dict(zip(self.arg_names, args))
    own_estimate = getattr(getattr(self, "early_config_prune", None), "smem_bytes", None)
    if own_estimate is not None:
        _SMEM_ESTIMATES[self.fn.__name__] = own_estimate
    try:
        if _PRUNE[0]:
            configs = self.prune_configs(kwargs)
        else:
            configs = _sm90_reachable(self.configs, self.nargs)
            # A kernel's early prune may say which configs a launch reaches on any problem (dtype, flags).
            reachable = getattr(getattr(self, "early_config_prune", None), "reachable", None)
            if reachable is not None:
                configs = reachable(configs, self.nargs, **kwargs)
        for config in configs:
            if config.pre_hook is not None:
                config.pre_hook({**self.nargs, **kwargs, **config.all_kwargs()})
            self.fn.run(*args, **kwargs, **config.all_kwargs())
    finally:
        self.nargs = None


def _sm90_reachable(configs, nargs: dict) -> list:
    """The GEMM configs an sm_90 device can benchmark for this launch's dtype on some problem: its tile list
    (cnnkern.triton.tiles.gemm_tile_space; a kernel whose configs hold none of that list keeps today's tiles
    everywhere), within the shared-memory estimate. Kernels without BLOCK_M/N/K tiles keep every config."""
    from cnnkern.triton.tiles import gemm_tile_space, tile_key, tile_smem_bytes

    gemm = [c for c in configs if all(k in c.kwargs for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))]
    t = next((v for v in nargs.values() if isinstance(v, torch.Tensor)), None)
    if len(gemm) != len(configs) or t is None:
        return configs
    space = set(gemm_tile_space((9, 0), t.dtype))
    keys = {tile_key(c) for c in gemm}
    if not keys & space:
        space = keys
    return [c for c in configs if tile_key(c) in space and tile_smem_bytes(tile_key(c), t.dtype) <= SM90_MAX_SMEM]


def _as_hopper() -> None:
    """Make the kernel modules see an H100/H200 behind every tensor (the CPU tensors of the workload): the
    configs are chosen, and the TMA paths enabled, as on sm_90."""
    from cnnkern.triton import tiles

    tiles.device_capability = lambda t: (9, 0)
    tiles.device_limits = lambda t: (SM90_MAX_SMEM, 132)
    _PRUNE[0] = True


def _accept_cpu_tensors() -> None:
    """Let the Triton backend take CPU tensors without the interpreter, so the ops reach the launches."""
    import importlib
    import pkgutil

    import cnnkern.triton as pkg

    pkg.why_not_device = lambda device: None
    pkg.why_unavailable = lambda: None
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"cnnkern.triton.{info.name}")
    for name, mod in list(sys.modules.items()):
        if name.startswith("cnnkern.triton") and callable(getattr(mod, "interpreting", None)):
            mod.interpreting = lambda: False  # flags such as UPCAST must take their compiled-GPU values
    try:
        from cnnkern.ops import backend as ops_backend
        ops_backend.get_backend("triton").why_unavailable = lambda: None
    except Exception as exc:  # noqa: BLE001 - the ops layer is being rewritten; say what broke
        print(f"warning: could not mark the triton backend available: {exc}", file=sys.stderr)


def _force_int64_indexing(on: bool) -> None:
    """Patch every ``needs_int64`` the kernel modules imported (INT64 variants without 4 GiB tensors)."""
    for name, mod in list(sys.modules.items()):
        if name.startswith("cnnkern.triton") and callable(getattr(mod, "needs_int64", None)):
            if not hasattr(mod, "_sm90_real_needs_int64"):
                mod._sm90_real_needs_int64 = mod.needs_int64
            mod.needs_int64 = (lambda tensors: True) if on else mod._sm90_real_needs_int64


# ---------------------------------------------------------------------------------------------- workload
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _x(shape, dtype, layout):
    if layout == "strided":
        n, c, h, w = shape
        return torch.randn(n, c + 1, h, 2 * w, dtype=dtype)[:, 1:, :, ::2]
    x = torch.randn(shape, dtype=dtype)
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x


def _fwd_bwd(fn, *tensors):
    """Forward, then backward with a gradient in the output's layout (as a following layer gives it) and, when
    that differs, a plain contiguous one (as the tests give it)."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in tensors]
    y = fn(*leaves)
    grads = [torch.randn_like(y)]
    if not grads[0].is_contiguous():
        grads.append(torch.randn(y.shape, dtype=y.dtype))
    for g in grads:
        torch.autograd.grad(y, [t for t in leaves if t is not None], g, retain_graph=True)


def _items(full: bool):
    """(name, callable) pairs; each runs ops under the forced Triton backend. Mirrors the tests' and the
    benchmarks' parameter space: dtypes x layouts x bias/epilogue flags per family, plus the kernel sizes,
    strides and multipliers they use (all sizes in --full; a few otherwise, for the shape constexprs)."""
    layouts = ("nchw", "channels_last", "strided")
    items = []
    conv_kernels = [(3, 3, 1, 1, 1)] + ([(1, 1, 1, 0, 1), (2, 3, 2, 1, 1), (4, 2, 1, 1, 1), (5, 4, 1, 1, 1),
                                         (3, 3, 2, 1, 2), (2, 2, 3, 0, 1)] if full else [(1, 1, 1, 0, 1)])
    for dtype in DTYPES:
        for layout in layouts:
            for bias in (True, False):
                for kh, kw, s, p, d in conv_kernels if (dtype, layout, bias) == (torch.float16, "nchw", True) \
                        else conv_kernels[:1]:
                    def conv(dtype=dtype, layout=layout, bias=bias, kh=kh, kw=kw, s=s, p=p, d=d):
                        x = _x((2, 8, 9, 7), dtype, layout)
                        w = torch.randn(12, 4, kh, kw, dtype=dtype)
                        b = torch.randn(12, dtype=dtype) if bias else None
                        _fwd_bwd(lambda x, w, b: cnnkern.conv2d(x, w, b, s, p, d, groups=2), x, w, b)
                    items.append((f"conv2d {dtype} {layout} bias={bias} k{kh}x{kw} s{s} d{d}", conv))

    dw_kernels = [(3, 3, 1, 1, 1, 1), (3, 3, 2, 1, 1, 2)] + (
        [(1, 1, 1, 0, 1, 1), (2, 2, 1, 0, 1, 1), (5, 5, 1, 4, 2, 4), (7, 7, 3, 3, 1, 1), (3, 5, 1, 2, 2, 2),
         (13, 13, 1, 6, 1, 1), (31, 31, 1, 15, 1, 1), (15, 13, 2, 7, 1, 2)] if full else [(31, 31, 1, 15, 1, 1)])
    for dtype in DTYPES:
        for layout in layouts:
            for bias in (True, False):
                for kh, kw, s, p, d, m in dw_kernels if (dtype, bias) == (torch.float16, True) else dw_kernels[:2]:
                    for deterministic in (False, True):
                        def dw(dtype=dtype, layout=layout, bias=bias, kh=kh, kw=kw, s=s, p=p, d=d, m=m,
                               deterministic=deterministic):
                            x = _x((2, 6, 17, 16), dtype, layout)
                            w = torch.randn(6 * m, 1, kh, kw, dtype=dtype)
                            b = torch.randn(6 * m, dtype=dtype) if bias else None
                            prior = torch.are_deterministic_algorithms_enabled()
                            torch.use_deterministic_algorithms(deterministic)
                            try:
                                _fwd_bwd(lambda x, w, b: cnnkern.depthwise_conv2d(x, w, b, s, p, d), x, w, b)
                            finally:
                                torch.use_deterministic_algorithms(prior)
                        name = f"depthwise {dtype} {layout} bias={bias} k{kh}x{kw} s{s} m{m} det={deterministic}"
                        items.append((name, dw))

    for dtype in DTYPES:
        for layout in layouts:
            for bias in (True, False):
                for c_in, c_out, groups in ((4, 6, 2), (8, 4, 4)):  # general, and depthwise-transposed (m=2)
                    def tconv(dtype=dtype, layout=layout, bias=bias, c_in=c_in, c_out=c_out, groups=groups):
                        x = _x((2, c_in, 5, 4), dtype, layout)
                        w = torch.randn(c_in, c_out // groups, 4, 4, dtype=dtype)
                        b = torch.randn(c_out, dtype=dtype) if bias else None
                        _fwd_bwd(lambda x, w, b: cnnkern.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                                          groups=groups), x, w, b)
                    items.append((f"conv_transpose2d {dtype} {layout} bias={bias} g{groups} c_out{c_out}",
                                  tconv))

    epilogues = {"none": (False, False, False, False), "bias": (True, False, False, False),
                 "relu": (True, False, False, True), "scale": (False, True, False, False),
                 "bn-relu": (False, True, True, True), "bias-bn": (True, True, True, False)}
    for dtype in DTYPES:
        for layout in layouts:
            for epi, (has_b, has_s, has_h, relu) in epilogues.items():
                for vec32 in ((False, True) if dtype in (torch.float16, torch.bfloat16) and has_s else (False,)):
                    def gpw(dtype=dtype, layout=layout, has_b=has_b, has_s=has_s, has_h=has_h, relu=relu,
                            vec32=vec32):
                        vdt = torch.float32 if vec32 else dtype
                        x = _x((2, 6, 5, 4), dtype, layout)
                        w = torch.randn(9, 2, 1, 1, dtype=dtype)
                        b = torch.randn(9, dtype=dtype) if has_b else None
                        scale = torch.rand(9, dtype=vdt) + 0.5 if has_s else None
                        shift = torch.randn(9, dtype=vdt) if has_h else None
                        _fwd_bwd(lambda x, w, b: cnnkern.group_pointwise_conv2d(
                            x, w, b, 3, 3, scale=scale, shift=shift, relu=relu), x, w, b)
                    items.append((f"group_pointwise {dtype} {layout} {epi} vec32={vec32}", gpw))

    # The slab forward's other specialisations (16-bit channels_last): no shuffle with 16-byte runs (ALIGN_Y 8),
    # a view cropped in W (no single pixel pitch), and the widest K x N block (cg_in 256, two column tiles).
    for dtype in (torch.float16, torch.bfloat16):
        def slab(dtype=dtype):
            x = torch.randn(2, 24, 5, 4, dtype=dtype).to(memory_format=torch.channels_last)
            w = torch.randn(48, 8, 1, 1, dtype=dtype)
            _fwd_bwd(lambda x, w: cnnkern.group_pointwise_conv2d(x, w, None, 3, None, relu=True), x, w)
            cropped = torch.randn(2, 24, 5, 7, dtype=dtype).to(memory_format=torch.channels_last)[..., 1:5]
            _fwd_bwd(lambda x, w: cnnkern.group_pointwise_conv2d(x, w, None, 3, 3), cropped, w)
            xl = x.detach().requires_grad_()
            g = torch.randn(2, 48, 5, 6, dtype=dtype).to(memory_format=torch.channels_last)[..., 1:5]
            torch.autograd.grad(cnnkern.group_pointwise_conv2d(xl, w, None, 3, 3), xl, g)  # a cropped gradient
            wide = torch.randn(2, 512, 3, 3, dtype=dtype).to(memory_format=torch.channels_last)
            w2 = torch.randn(320, 256, 1, 1, dtype=dtype)
            _fwd_bwd(lambda x, w: cnnkern.group_pointwise_conv2d(x, w, None, 2, None), wide, w2)
        items.append((f"group_pointwise slab {dtype}", slab))

    for dtype in DTYPES:
        for layout in layouts:
            def shuffle(dtype=dtype, layout=layout):
                _fwd_bwd(lambda x: cnnkern.channel_shuffle(x, 3), _x((2, 12, 3, 5), dtype, layout))

            def cat1(dtype=dtype, layout=layout):
                p, x = _x((2, 5, 4, 3), dtype, layout), _x((2, 5, 4, 3), dtype, layout)
                w = torch.randn(5, 5, 1, 1, dtype=dtype)
                scale, shift = torch.rand(5, dtype=dtype) + 0.5, torch.randn(5, dtype=dtype)
                _fwd_bwd(lambda p, x, w: cnnkern.shuffle_cat_pointwise(p, x, w, scale=scale, shift=shift,
                                                                       relu=True), p, x, w)

            def cat2(dtype=dtype, layout=layout):
                x1, x2 = _x((2, 6, 3, 4), dtype, layout), _x((2, 4, 3, 4), dtype, layout)
                w1, w2 = torch.randn(8, 3, 1, 1, dtype=dtype), torch.randn(8, 2, 1, 1, dtype=dtype)
                b1 = torch.randn(8, dtype=dtype)
                s, h = torch.rand(8, dtype=dtype) + 0.5, torch.randn(8, dtype=dtype)
                _fwd_bwd(lambda x1, w1, b1, x2, w2: cnnkern.shuffle_cat_pointwise2(
                    x1, w1, x2, w2, bias1=b1, groups=2, scale1=s, shift1=h, scale2=s, shift2=h, relu=True),
                    x1, w1, b1, x2, w2)
            items += [(f"channel_shuffle {dtype} {layout}", shuffle), (f"shuffle_cat_pointwise {dtype} {layout}",
                                                                        cat1),
                      (f"shuffle_cat_pointwise2 {dtype} {layout}", cat2)]

    # Fused conv + BatchNorm + activation (direct and depthwise), in training (batch statistics) and eval.
    if hasattr(cnnkern, "conv_bn_relu"):
        for dtype in DTYPES:
            for layout in layouts:
                for training in (True, False):
                    for act in ("relu", "relu6", "silu", None):
                        # (depthwise with one filter per channel: the row-walk forward in channels_last)
                        for groups, bias, co in ((1, True, 12), (1, False, 12), (6, False, 12), (6, True, 6)):
                            def cbr(dtype=dtype, layout=layout, training=training, act=act, groups=groups,
                                    bias=bias, co=co):
                                x = _x((2, 6, 7, 5), dtype, layout)
                                w = torch.randn(co, 6 // groups, 3, 3, dtype=dtype)
                                b = torch.randn(co, dtype=dtype) if bias else None
                                bn_w, bn_b = torch.rand(co, dtype=dtype) + 0.5, torch.randn(co, dtype=dtype)
                                mean, var = torch.zeros(co, dtype=dtype), torch.ones(co, dtype=dtype)
                                def run(x, w, b, bn_w, bn_b):
                                    return cnnkern.conv_bn_relu(x, w, b, bn_w, bn_b, mean, var, training,
                                                                padding=1, groups=groups, activation=act)
                                _fwd_bwd(run, x, w, b, bn_w, bn_b)
                                with torch.no_grad():  # eval without autograd folds BN into the conv epilogue
                                    run(x, w, b, bn_w, bn_b)
                            name = (f"conv_bn_relu {dtype} {layout} training={training} act={act} g{groups} "
                                    f"c{co} b={bias}")
                            items.append((name, cbr))

    # The GPU tests' int64 cases (an input past 2^31 elements): real launches, with i64 sizes and strides.
    # torch.empty leaves the pages untouched and no kernel runs, so these cost address space only.
    def big_conv():
        x = torch.empty(1, 2, 32768, 32800, dtype=torch.float16)
        with torch.no_grad():
            cnnkern.conv2d(x, torch.randn(1, 2, 3, 3, dtype=torch.float16), padding=1)

    def big_dw(memory_format):
        x = torch.empty(2, 16, 8192, 8200, dtype=torch.float16, memory_format=memory_format)
        with torch.no_grad():
            cnnkern.depthwise_conv2d(x, torch.randn(16, 1, 3, 3, dtype=torch.float16), padding=1)
    items += [("int64 conv2d fwd (2.15e9 elements)", big_conv),
              ("int64 depthwise fwd nchw", lambda: big_dw(torch.contiguous_format)),
              ("int64 depthwise fwd channels_last", lambda: big_dw(torch.channels_last))]
    return items


def _hopper_items():
    """The tensor-core GEMM kernels at benchmark-like alignment (channel counts multiples of 16, so Triton
    specialises the strides as it does for the real layers): 16-bit, both layouts, forward and backward.
    The tests' odd tiny shapes compile to unvectorised gathers that Triton cannot stage with cp.async, so
    they say nothing about the pipeline the benchmark layers get."""
    items = []
    # Two (dtype, layout) pairs rather than all four: the dtype does not change how Triton stages a tile,
    # the layout does (contiguous channels or contiguous pixels); both dtypes are still compiled.
    for dtype, layout in ((torch.float16, "channels_last"), (torch.bfloat16, "nchw")):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format

        def conv(dtype=dtype, fmt=fmt):
            x = torch.randn(2, 64, 16, 16, dtype=dtype).to(memory_format=fmt)
            w = torch.randn(64, 64, 3, 3, dtype=dtype).to(memory_format=fmt)
            _fwd_bwd(lambda x, w: cnnkern.conv2d(x, w, None, 1, 1), x, w)

        def tconv(dtype=dtype, fmt=fmt):
            x = torch.randn(2, 64, 8, 8, dtype=dtype).to(memory_format=fmt)
            w = torch.randn(64, 32, 4, 4, dtype=dtype)
            with torch.no_grad():
                cnnkern.conv_transpose2d(x, w, None, 2, 1)

        def gpw(dtype=dtype, fmt=fmt):
            x = torch.randn(2, 256, 8, 8, dtype=dtype).to(memory_format=fmt)
            w = torch.randn(256, 64, 1, 1, dtype=dtype)
            _fwd_bwd(lambda x, w: cnnkern.group_pointwise_conv2d(x, w, None, 4, 4), x, w)

        items += [(f"hopper conv2d {dtype} {layout}", conv),
                  (f"hopper conv_transpose2d {dtype} {layout}", tconv),
                  (f"hopper group_pointwise {dtype} {layout}", gpw)]
    # ResNet-50 layers at their real sizes (NHWC, 16-bit, forward and backward), so that the configs the
    # autotuner keeps for them on sm_90 are the ones compiled: the 128x256 / 256x128 tiles for the wide
    # layers, the 64-column ones for 64 channels. Nothing runs; torch.empty costs address space only.
    for dtype in (torch.float16, torch.bfloat16):
        for batch, c_in, c_out, k, size in RESNET50_HOPPER:
            def layer(dtype=dtype, batch=batch, c_in=c_in, c_out=c_out, k=k, size=size):
                x = torch.empty(batch, c_in, size, size, dtype=dtype, memory_format=torch.channels_last)
                w = torch.empty(c_out, c_in, k, k, dtype=dtype, memory_format=torch.channels_last)
                x.requires_grad_()
                w.requires_grad_()
                y = cnnkern.conv2d(x, w, None, 1, k // 2)
                torch.autograd.grad(y, [x, w], torch.empty_like(y))
            items.append((f"hopper resnet50 {k}x{k} {c_in}->{c_out}@{size} N{batch} {dtype}", layer))
    # Shuffled ShuffleNetV1 layers at their real sizes: the slab kernels' wide reductions (BLOCK_K 128 and
    # 256) with per-element stores, whose 64-accumulator tiles spilled 40-52 B on sm_90 (the workload above
    # only reaches BLOCK_K 64). Forward and backward; nothing runs.
    for c_in, c_out, groups, size in SHUFFLED_HOPPER:
        def shuffled(c_in=c_in, c_out=c_out, groups=groups, size=size):
            x = torch.empty(256, c_in, size, size, dtype=torch.bfloat16, memory_format=torch.channels_last)
            w = torch.empty(c_out, c_in // groups, 1, 1, dtype=torch.bfloat16)
            x.requires_grad_()
            w.requires_grad_()
            y = cnnkern.group_pointwise_conv2d(x, w, None, groups, groups)
            torch.autograd.grad(y, [x, w], torch.empty_like(y))
        items.append((f"hopper shufflenet {c_in}->{c_out} g{groups} +sh{groups} @{size} N256", shuffled))
    # The depthwise weight gradient's row walk at real sizes, every dtype, atomic and deterministic: its
    # tile, warps and tap rows are chosen by the host for the problem and an H100's SM count, so only a real
    # layer reaches them (7x7 keeps 98 fp32 accumulators per thread). Called directly: nothing else runs.
    # The strided input gradient's phase walk likewise (host-tiled; its windows per thread grow with the
    # kernel and stride).
    from cnnkern.problem.conv2d import Conv2dSpec
    from cnnkern.triton.depthwise_conv2d import backward_input as dw_backward_input
    from cnnkern.triton.depthwise_conv2d import backward_weight as dw_backward_weight

    for dtype in DTYPES:
        for c, size, k, stride in DEPTHWISE_HOPPER:
            for deterministic in (False, True):
                def dw_grads(dtype=dtype, c=c, size=size, k=k, stride=stride, deterministic=deterministic):
                    x = torch.empty(256, c, size, size, dtype=dtype, memory_format=torch.channels_last)
                    out = (size + 2 * (k // 2) - k) // stride + 1
                    g = torch.empty(256, c, out, out, dtype=dtype, memory_format=torch.channels_last)
                    w = torch.empty(c, 1, k, k, dtype=dtype)
                    spec = Conv2dSpec((stride, stride), (k // 2,) * 4, (1, 1), c, (out, out))
                    dw_backward_weight(g, x, torch.empty_like(w), spec, deterministic)
                    if stride > 1 and not deterministic:
                        dw_backward_input(g, w, torch.empty_like(x), spec)
                name = f"hopper depthwise backward dw{c} {k}x{k} @{size}/s{stride} N256 {dtype} det={deterministic}"
                items.append((name, dw_grads))
            if dtype in (torch.bfloat16, torch.float64):  # NCHW: one channel per program, lanes along W
                def dw_wgrad_nchw(dtype=dtype, c=c, size=size, k=k, stride=stride):
                    x = torch.empty(256, c, size, size, dtype=dtype)
                    out = (size + 2 * (k // 2) - k) // stride + 1
                    spec = Conv2dSpec((stride, stride), (k // 2,) * 4, (1, 1), c, (out, out))
                    dw_backward_weight(torch.empty(256, c, out, out, dtype=dtype), x,
                                       torch.empty(c, 1, k, k, dtype=dtype), spec, False)
                items.append((f"hopper depthwise wgrad nchw dw{c} {k}x{k} @{size}/s{stride} N256 {dtype}",
                              dw_wgrad_nchw))
    return items


# (batch, channels in, channels out, kernel, size): ResNet-50 layers whose sm_90 configs --hopper compiles.
RESNET50_HOPPER = ((256, 256, 256, 3, 14), (32, 64, 64, 3, 56), (32, 64, 256, 1, 56))
# (channels in, channels out, groups = shuffle groups, size): ShuffleNetV1 g3 layers for --hopper.
SHUFFLED_HOPPER = ((240, 120, 3, 28), (480, 240, 3, 14))
# (channels, size, kernel, stride): depthwise layers for --hopper (ALIGN 8, 4 and 2, 7x7, a 7x7 map,
# RepLKNet's 31x31 and 13x13, stride 2 at 3x3 and 5x5, 7x7 at stride 3: the phase walk's most windows).
DEPTHWISE_HOPPER = ((32, 112, 3, 1), (58, 28, 3, 1), (96, 56, 7, 1), (232, 7, 3, 1), (128, 56, 31, 1),
                    (1024, 7, 13, 1), (64, 112, 3, 2), (116, 28, 3, 2), (144, 56, 5, 2), (96, 56, 7, 3))


def record_launches(full: bool, hopper: bool = False) -> tuple[list[Launch], list[str]]:
    JITFunction.run = _recording_run
    Autotuner.run = _recording_autotune
    _accept_cpu_tensors()
    if hopper:
        _as_hopper()
    errors = []
    items = _hopper_items() if hopper else _items(full)
    # Every item once as it is, then the small ones again with INT64 indexing forced on (the big-tensor
    # items reach it for real only in the forward kernels they use).
    for int64 in (False, True):
        _force_int64_indexing(int64)
        for name, run in items:
            if int64 and name.startswith("int64"):
                continue
            _origin[0] = name + (" [INT64 forced]" if int64 else "")
            try:
                with cnnkern.use_backend("triton"):
                    run()
            except Exception as exc:  # noqa: BLE001 - reported, the other items still run
                errors.append(f"{_origin[0]}: {type(exc).__name__}: {exc}")
    _force_int64_indexing(False)
    return list(_records.values()), errors


def _factors(launch: Launch) -> dict:
    """What a launch is made of, for coverage: the autotune config (block sizes, warps, stages) as one factor,
    every other non-shape constexpr, the pointer dtypes, and whether any size/stride argument is 64-bit."""
    cons = launch.named_constexprs()
    blocks = tuple(sorted((k, v) for k, v in cons.items() if k.startswith("BLOCK_") and k not in SHAPE_CONSTEXPRS))
    out = {k: v for k, v in cons.items() if not k.startswith("BLOCK_") and k not in SHAPE_CONSTEXPRS}
    out["config"] = (blocks, launch.config())
    out["pointers"] = tuple(v for v in launch.signature.values() if v.startswith("*"))
    out["i64 args"] = any(v == "i64" for v in launch.signature.values())
    return out


def _tile_volume(launch: Launch) -> int:
    """Block sizes x pipeline stages: the config that needs the most registers and shared memory is largest."""
    vol = launch.options.num_stages
    for k, v in launch.named_constexprs().items():
        if k.startswith("BLOCK_") and k not in SHAPE_CONSTEXPRS:
            vol *= int(v)
    return vol


def _greedy_cover(group: list[Launch], covers: list[set]) -> list[Launch]:
    todo, chosen = set().union(*covers), []
    while todo:
        best = max(range(len(group)), key=lambda i: len(covers[i] & todo))
        chosen.append(group[best])
        todo -= covers[best]
    return chosen


def representatives(launches: list[Launch], level: str) -> list[Launch]:
    """Which recorded launches to compile.

    ``all``: every distinct launch. ``combos``: one per kernel x combination of factors (shape constexprs and
    int specialisation collapsed). ``pairs`` (default): per kernel, a greedy set in which every pair of factor
    values seen together in some launch (dtype x autotune config, INT64 x layout, flag x flag, ...) occurs at
    least once. ``quick``: every value of every factor at least once, and every dtype with the kernel's
    largest tile (the config most likely to run out of registers or shared memory)."""
    if level == "all":
        return launches
    combos: dict[tuple, Launch] = {}
    for launch in launches:
        combos.setdefault((launch.name, tuple(sorted(_factors(launch).items()))), launch)
    if level == "combos":
        return list(combos.values())
    by_kernel: dict[str, list[Launch]] = {}
    for launch in combos.values():
        by_kernel.setdefault(launch.name, []).append(launch)
    chosen = []
    for group in by_kernel.values():
        covers = []
        largest = max(_tile_volume(launch) for launch in group)
        for launch in group:
            items = sorted(_factors(launch).items(), key=lambda kv: kv[0])
            if level == "pairs":
                covers.append({(a, b) for i, a in enumerate(items) for b in items[i + 1:]})
            else:
                cover = set(items)
                if _tile_volume(launch) == largest:
                    cover.add(("largest tile with", _factors(launch)["pointers"]))
                covers.append(cover)
        chosen += _greedy_cover(group, covers)
    return chosen


# ---------------------------------------------------------------------------------------------- compiling
_PTXAS_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def _resource_usage(cubin: bytes) -> dict:
    """REG, STACK, LOCAL, ... of the one kernel in a cubin, from ``cuobjdump --dump-resource-usage``."""
    import subprocess

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([_CUOBJDUMP, "--dump-resource-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    return {k: int(v) for k, v in re.findall(r"\b([A-Z]+):(\d+)", text.split("Function", 1)[-1])}


def _compile_one(index: int) -> dict:
    launch = _TODO[index]
    out = {"kernel": launch.name, "constexprs": launch.named_constexprs(), "config": launch.config(),
           "origin": launch.origin, "signature": {k: v for k, v in launch.signature.items() if v != "constexpr"}}
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            src = ASTSource(launch.fn, launch.signature, launch.constexprs, launch.attrs)
            kernel = triton_compile(src, target=TARGET, options=launch.options.__dict__)
        # ptxas -v reports spills, but only when it ran (not on a cache hit); cuobjdump reads any cubin.
        text = log.getvalue()
        spill = _PTXAS_SPILL.search(text)
        usage = _resource_usage(kernel.asm["cubin"])
        out.update(ptx_counts(kernel.asm["ptx"]))
        out.update(ok=True, regs=usage.get("REG"), stack=usage.get("STACK", 0), local=usage.get("LOCAL", 0),
                   spill_stores=int(spill.group(1)) if spill else None,
                   spill_loads=int(spill.group(2)) if spill else None,
                   smem=int(kernel.metadata.shared), threads=launch.options.num_warps * 32)
    except Exception as exc:  # noqa: BLE001 - a compile failure is the result we are looking for
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}".strip()[:2000],
                   trace=traceback.format_exc(limit=3)[-1500:])
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


_TODO: list[Launch] = []


def compile_all(launches: list[Launch], jobs: int) -> list[dict]:
    global _TODO
    _TODO = launches
    knobs.nvidia.dump_ptxas_log = True  # make_cubin prints ptxas -v: registers, spills, stack
    results = []

    def progress(r):
        results.append(r)
        if not r["ok"]:
            print(f"  FAILED {r['kernel']} [{r['config']}] {r['constexprs']}: {r['error'][:300]}", flush=True)
        if len(results) % 50 == 0 or len(results) == len(launches):
            print(f"  {len(results)}/{len(launches)} compiled", flush=True)

    if jobs <= 1:
        for i in range(len(launches)):
            progress(_compile_one(i))
        return results
    import multiprocessing as mp

    # fork: workers inherit the recorded launches (JITFunctions do not pickle).
    with mp.get_context("fork").Pool(jobs) as pool:
        for r in pool.imap_unordered(_compile_one, range(len(launches))):
            progress(r)
    return results


# ---------------------------------------------------------------------------------------------- report
def _spill(r: dict) -> int:
    """Spilled bytes: ptxas' count when it ran, else the stack frame (spills live there; an upper bound)."""
    if r["spill_stores"] is not None:
        return max(r["spill_stores"], r["spill_loads"])
    return r["stack"]


def _mma_report(results: list[dict]) -> None:
    """Per kernel that multiplies 16-bit tiles: how many of its variants reach wgmma, how many stay on
    mma.sync, and whether any stages operands with TMA or cp.async."""
    rows = {}
    for r in results:
        if not r["ok"] or element(r) not in ("fp16", "bf16"):
            continue
        row = rows.setdefault(r["kernel"], {"variants": 0, "wgmma": 0, "mma_sync": 0, "tma": 0, "cp_async": 0})
        row["variants"] += 1
        for kind in PTX_KINDS:
            row[kind] += bool(r.get(kind))
    rows = {k: v for k, v in rows.items() if v["wgmma"] or v["mma_sync"]}
    if not rows:
        return
    print(f"\n16-bit variants by the MMA they compile to (sm_90 PTX):\n{'kernel':34} {'variants':>8} {'wgmma':>6} "
          f"{'mma.sync':>8} {'TMA':>4} {'cp.async':>8}")
    for name, v in sorted(rows.items()):
        print(f"{name:34} {v['variants']:8d} {v['wgmma']:6d} {v['mma_sync']:8d} {v['tma']:4d} {v['cp_async']:8d}")


def _tile_table(results: list[dict], tiles) -> None:
    """Per kernel and sm_90 tile (16-bit, channels_last): registers, shared memory and PTX instruction
    counts, the largest over the variants compiled (the numbers cnnkern/triton/conv2d.md records)."""
    rows: dict[tuple, dict] = {}
    for r in results:
        tile = tile_of(r) if r["ok"] else None
        if tile not in tiles or element(r) not in ("fp16", "bf16") or r["constexprs"].get("CHANNELS_LAST") != "True":
            continue
        row = rows.setdefault((r["kernel"], tile), {"n": 0, "regs": 0, "smem": 0, "spill": 0,
                                                    **{k: 0 for k in PTX_KINDS}})
        row["n"] += 1
        for k in ("regs", "smem", *PTX_KINDS):
            row[k] = max(row[k], r.get(k) or 0)
        row["spill"] = max(row["spill"], _spill(r))
    if not rows:
        return
    print(f"\nsm_90 tiles, 16-bit channels_last (max over variants):\n{'kernel':28} {'tile (M N K w s)':22} "
          f"{'n':>3} {'regs':>4} {'spill':>5} {'smem':>7} {'wgmma':>5} {'TMA':>4} {'cp.async':>8}")
    for (name, tile), v in sorted(rows.items()):
        print(f"{name:28} {' '.join(map(str, tile)):22} {v['n']:3d} {v['regs']:4d} {v['spill']:5d} {v['smem']:7d} "
              f"{v['wgmma']:5d} {v['tma']:4d} {v['cp_async']:8d}")


def report(results: list[dict], strict: bool) -> int:
    failures = [r for r in results if not r["ok"]]
    over_smem = [r for r in results if r["ok"] and r["smem"] > SM90_MAX_SMEM]
    spills = [r for r in results if r["ok"] and _spill(r)]
    print(f"\n{'kernel':34} {'variants':>8} {'fail':>4} {'regs min-max':>13} {'spill max (B)':>14} "
          f"{'smem max (B)':>13} {'>227KiB':>7}")
    for name in sorted({r["kernel"] for r in results}):
        rs = [r for r in results if r["kernel"] == name]
        ok = [r for r in rs if r["ok"]]
        regs = [r["regs"] for r in ok if r["regs"] is not None]
        reg_txt = f"{min(regs)}-{max(regs)}" if regs else "-"
        print(f"{name:34} {len(rs):8d} {len(rs) - len(ok):4d} {reg_txt:>13} "
              f"{max((_spill(r) for r in ok), default=0):14d} {max((r['smem'] for r in ok), default=0):13d} "
              f"{sum(r['smem'] > SM90_MAX_SMEM for r in ok):7d}")
    _mma_report(results)
    # A flag that kept one value was compiled one way only: if the GPU can reach its other value, the
    # workload here misses an op or argument (UPCAST is interpreter-only, so False is its one GPU value).
    seen: dict[str, dict[str, set]] = {}
    for r in results:
        for k, v in r["constexprs"].items():
            if not k.startswith("BLOCK_") and k not in SHAPE_CONSTEXPRS and k != "UPCAST":
                seen.setdefault(r["kernel"], {}).setdefault(k, set()).add(v)
    for name, flags in sorted(seen.items()):
        single = {k: next(iter(v)) for k, v in flags.items() if len(v) == 1}
        if single:
            print(f"coverage: {name} compiled with only {single}")
    for r in failures:
        print(f"\nFAILED {r['kernel']} [{r['config']}] constexprs={r['constexprs']}\n  from: {r['origin']}\n"
              f"  {r['error']}")
    if over_smem:
        print(f"\n{len(over_smem)} compiled variants need more shared memory than sm_90 gives one block "
              f"({SM90_MAX_SMEM} B): the autotuner skips them when benchmarking (OutOfResources), a launch "
              "left with only such a config fails:")
        for r in over_smem:
            print(f"  {r['kernel']} [{r['config']}] {r['constexprs']}: {r['smem']} B")
    if spills:
        print(f"\n{len(spills)} variants spill registers, worst first (bytes per thread):")
        for r in sorted(spills, key=lambda r: -_spill(r))[:25]:
            print(f"  {r['kernel']} {element(r)} [{r['config']}] {r['constexprs']}: {r['regs']} regs, "
                  f"{_spill(r)} B")
    return 1 if failures or (strict and over_smem) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--full", action="store_true", help="more kernel sizes, strides and multipliers in the workload")
    ap.add_argument("--level", choices=("quick", "pairs", "combos", "all"), default="pairs",
                    help="which recorded launches to compile (see representatives()); default: pairs")
    ap.add_argument("--strict", action="store_true", help="also fail on configs over the shared-memory limit")
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--cache-dir", help="Triton cache to use (default: a fresh temporary one, so every "
                                        "kernel really compiles)")
    ap.add_argument("--only", help="compile only kernels whose name contains this")
    ap.add_argument("--hopper", action="store_true",
                    help="instead: the 16-bit GEMM kernels at benchmark-like alignment and ResNet-50 sizes, with "
                         "the configs the autotuner keeps for them on sm_90; fail unless each warpgroup-sized "
                         "tile compiles to wgmma fed by cp.async/TMA and each sm_90 tile (HOPPER_GEMM_TILES) "
                         "has no spill, <= 255 registers, smem within 227 KB and the pruning's estimate, and "
                         "TMA where USE_TMA; plus the host-tiled FMA kernels (HOPPER_FMA_KERNELS) at real "
                         "sizes, without spills")
    args = ap.parse_args()

    t0 = time.perf_counter()
    launches, errors = record_launches(args.full, args.hopper)
    if args.hopper:  # INT64 variants are the tests' business; every config here, not a cover
        todo = [launch for launch in launches if launch.named_constexprs().get("INT64") != "True"
                and ("BLOCK_K" in launch.named_constexprs() or launch.name in HOPPER_FMA_KERNELS)]
    else:
        todo = representatives(launches, args.level)
    if args.only:
        todo = [launch for launch in todo if args.only in launch.name]
    t1 = time.perf_counter()
    print(f"triton {triton.__version__}, torch {torch.__version__}; target {TARGET}")
    print(f"recorded {len(launches)} distinct launches in {t1 - t0:.1f} s; compiling {len(todo)} "
          f"(level {args.level}) with {args.jobs} jobs")
    for err in errors:
        print(f"workload error (no launch recorded): {err}")
    with tempfile.TemporaryDirectory() as tmp:
        knobs.cache.dir = args.cache_dir or tmp
        results = compile_all(todo, args.jobs)
    t2 = time.perf_counter()
    status = report(results, args.strict)
    if args.hopper:
        bad, known = hopper_violations(results)
        for line in bad:
            print(f"HOPPER: {line}")
        print(f"hopper rule: {len(bad)} violation(s); {len(known)} known NCHW variant(s) without async "
              "staging (see hopper_violations)")
        status = status or int(bool(bad))
        from cnnkern.triton.tiles import HOPPER_GEMM_TILES, tile_smem_bytes

        def estimate(tile, el, kernel):
            dtype = torch.float16 if el in ("fp16", "bf16") else torch.float32
            return _SMEM_ESTIMATES.get(kernel, tile_smem_bytes)(tile, dtype)

        tile_bad, notes = hopper_tile_violations(results, HOPPER_GEMM_TILES, SM90_MAX_SMEM, estimate)
        _tile_table(results, HOPPER_GEMM_TILES)
        for line in notes:
            print(f"note: {line}")
        for line in tile_bad:
            print(f"HOPPER TILE: {line}")
        print(f"hopper tile rules (wgmma, no spill, <= 255 registers, shared memory within {SM90_MAX_SMEM} B and "
              f"the pruning's estimate): {len(tile_bad)} violation(s), {len(notes)} note(s)")
        status = status or int(bool(tile_bad))
        fma_bad = fma_violations(results)
        for line in fma_bad:
            print(f"HOPPER FMA: {line}")
        print(f"real-size FMA kernels ({', '.join(HOPPER_FMA_KERNELS)}: no spill, <= 255 registers): "
              f"{len(fma_bad)} violation(s)")
        status = status or int(bool(fma_bad))
    print(f"\ncompiled {len(results)} variants ({sum(not r['ok'] for r in results)} failed) in {t2 - t1:.1f} s; "
          f"total {t2 - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"triton": triton.__version__, "target": str(TARGET), "results": results,
                       "workload_errors": errors}, f, indent=1)
    if errors:
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
