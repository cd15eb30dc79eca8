"""scripts/kernels_check_coverage.py: the torch-free kernel check must instantiate what the extension ships
(CI's only sm_80 build of the device code). Keys on demangled names written as c++filt prints them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import kernels_check_coverage as cov

GEMM_BIG = ("void cnnkern::implicit_gemm_kernel<cnnkern::Conv2dFwdProblem<__half, (cnnkern::Fast)1, 8, "
            "(cnnkern::EpiKind)0>, cnnkern::GemmTileBig<__half> >(cnnkern::Conv2dFwdProblem<__half, "
            "(cnnkern::Fast)1, 8, (cnnkern::EpiKind)0>)")
GEMM_SMALL = GEMM_BIG.replace("GemmTileBig", "GemmTile")
DW_A = ("void cnnkern::dw_direct_kernel<__half, 8, 1, 3, false, (cnnkern::EpiKind)0, 1, 2>"
        "(cnnkern::DwDirectParams<__half>)")
DW_B = ("void cnnkern::dw_direct_kernel<__half, 2, 1, 7, false, (cnnkern::EpiKind)2, 1, 1>"
        "(cnnkern::DwDirectParams<__half>)")
DW_BF16 = DW_A.replace("__half", "__nv_bfloat16")
SMALLK_4 = "void cnnkern::gpw_smallk_kernel<__half, 4, false>(cnnkern::GpwSmallK<__half, 4, false>)"
SMALLK_MMA = "void cnnkern::gpw_smallk_kernel<__half, 0, false>(cnnkern::GpwSmallK<__half, 0, false>)"


def test_template_name():
    assert cov.template_name(GEMM_BIG) == "implicit_gemm_kernel"
    assert cov.template_name(DW_A) == "dw_direct_kernel"
    assert cov.template_name("void cnnkern::sm90::conv2d_fwd_sm90_kernel<__half>(x)") == "conv2d_fwd_sm90_kernel"


def test_exact_templates_need_the_same_instantiation():
    # The tile type and an integer argument both tell instantiations apart outside SAMPLED.
    assert cov.missing([GEMM_BIG, GEMM_SMALL], [GEMM_SMALL]) == [GEMM_BIG]
    assert cov.missing([SMALLK_4, SMALLK_MMA], [SMALLK_MMA]) == [SMALLK_4]
    assert cov.missing([GEMM_BIG, SMALLK_4], [SMALLK_4, GEMM_BIG]) == []


def test_sampled_template_needs_each_element_type():
    # One instantiation per element type covers the others of that type; a missing type is reported.
    assert cov.coverage_key(DW_A) == cov.coverage_key(DW_B) == "dw_direct_kernel<__half, ...>"
    assert cov.missing([DW_A, DW_B], [DW_A]) == []
    assert cov.missing([DW_A, DW_BF16], [DW_B]) == ["dw_direct_kernel<__nv_bfloat16, ...>"]


def test_built_check_covers_the_built_extension():
    """The real objects, where both builds exist (CI runs the script itself after the emulator build)."""
    objects = cov.default_objects()
    so = cov.find_extension()
    if not objects or so is None or cov.find_cuobjdump() is None:
        pytest.skip("needs build/emulate's cnnkern_kernels_check objects, the built extension and cuobjdump")
    assert cov.main([]) == 0
