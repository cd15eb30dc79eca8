"""scripts/sass_check.py: its parsers on small samples written from real nvcc 13 / cuobjdump 13.1 output
(no nvcc needed), its rule outcomes (PASS / FAIL / XFAIL / XPASS), and, when nvcc and cuobjdump are present,
one tiny real compile through the whole path."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import sass_check
import sass_rules

# ptxas -v for two entries: the second has no "Function properties" line and no smem field (both happen),
# and a device function's properties in between must not be taken for an entry's.
PTXAS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN7cnnkern20implicit_gemm_kernelINS_16Conv2dFwdProblemI13__nv_bfloat16LNS_4FastE1ELi8ELNS_7EpiKindE0EEEEEvT_' for 'sm_90'
ptxas info    : Function properties for _ZN7cnnkern20implicit_gemm_kernelINS_16Conv2dFwdProblemI13__nv_bfloat16LNS_4FastE1ELi8ELNS_7EpiKindE0EEEEEvT_
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 92 registers, used 1 barriers, 33792 bytes smem
ptxas info    : Compile time = 191.853 ms
ptxas info    : Function properties for _ZN7cnnkern6helperEv
    24 bytes stack frame, 24 bytes spill stores, 24 bytes spill loads
ptxas info    : Compiling entry function '_ZN7cnnkern22channel_shuffle_kernelItLi1ELb1EEEvNS_20ChannelShuffleParamsIT_EE' for 'sm_90'
ptxas info    : Used 32 registers, used 0 barriers
ptxas info    : Compiling entry function '_ZN7cnnkern5spillEv' for 'sm_90'
ptxas info    : Function properties for _ZN7cnnkern5spillEv
    40 bytes stack frame, 36 bytes spill stores, 28 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 16 bytes smem, 400 bytes cmem[0]
"""

# cuobjdump --dump-sass: two functions, predicated instructions, encodings on continuation lines.
SASS = """
\tcode for sm_90
\t.target\tsm_90

\t\tFunction : _ZN7cnnkern27channel_shuffle_tile_kernelItLb0EEEvNS_24ChannelShuffleTileParamsIT_EE
\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                                     /* 0x00000a00ff017b82 */
                                                                                              /* 0x000fe20000000800 */
        /*2600*/              @!P4 LDG.E.128.CONSTANT R8, desc[UR10][R34.64] ;               /* 0x0000000a22088981 */
                                                                                              /* 0x000ea2000c1e9d00 */
        /*2610*/              @!P2 LDG.E.128.CONSTANT R4, desc[UR10][R34.64+0x1000] ;        /* 0x0000100a22048981 */
        /*26f0*/              @!P0 LDG.E.U16.CONSTANT R2, desc[UR16][R2.64] ;                /* 0x0000001002028981 */
        /*2840*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;                              /* 0x0000000000007b1d */
        /*3270*/                   LDS.128 R24, [R25] ;                                       /* 0x0000000019187984 */
        /*33f0*/                   LDS.U16 R29, [R29] ;                                       /* 0x000000001d1d7984 */
        /*33a0*/                   STG.E.128 desc[UR16][R30.64], R24 ;                        /* 0x000000181e007986 */
        /*3400*/               @P0 STG.E.U16 desc[UR16][R2.64], R5 ;                          /* 0x0000000502000986 */
        /*3f90*/                   EXIT ;                                                     /* 0x000000000000794d */
        /*3fa0*/                   BRA 0x3fa0;                                                /* 0xfffffffc00fc7947 */
\t\t..........

\t\tFunction : _ZN7cnnkern5spillEv
\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   STL.64 [R1], R4 ;                                          /* 0x0000000401007387 */
        /*0010*/                   LDL R6, [R1+0x8] ;                                         /* 0x0000080001067983 */
        /*0020*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;                      /* 0x0000000c0804723c */
        /*0030*/                   LDSM.16.M88.4 R8, [R2] ;                                   /* 0x000000000208783b */
        /*0040*/                   LDGSTS.E.BYPASS.LTC128B.128 [R3], desc[UR4][R6.64] ;       /* 0x0000000006037fae */
        /*0050*/                   EXIT ;                                                     /* 0x000000000000794d */
"""

GEMM = "_ZN7cnnkern20implicit_gemm_kernelINS_16Conv2dFwdProblemI13__nv_bfloat16LNS_4FastE1ELi8ELNS_7EpiKindE0EEEEEvT_"
SHUF = "_ZN7cnnkern22channel_shuffle_kernelItLi1ELb1EEEvNS_20ChannelShuffleParamsIT_EE"
TILE = "_ZN7cnnkern27channel_shuffle_tile_kernelItLb0EEEvNS_24ChannelShuffleTileParamsIT_EE"
SPILL = "_ZN7cnnkern5spillEv"


def test_parse_ptxas():
    r = sass_check.parse_ptxas(PTXAS)
    assert set(r) == {GEMM, SHUF, SPILL}
    assert r[GEMM] == {"regs": 92, "stack": 0, "spill_stores": 0, "spill_loads": 0, "smem": 33792, "barriers": 1}
    assert r[SHUF]["regs"] == 32 and r[SHUF]["smem"] == 0 and r[SHUF]["spill_stores"] == 0
    assert (r[SPILL]["spill_stores"], r[SPILL]["spill_loads"], r[SPILL]["smem"], r[SPILL]["regs"]) == (36, 28, 16, 255)


def test_parse_sass_counts():
    r = sass_check.parse_sass(SASS)
    assert set(r) == {TILE, SPILL}
    tile = r[TILE]
    assert tile["LDG.E.128.CONSTANT"] == 2 and tile["LDG.E.U16.CONSTANT"] == 1 and tile["STG.E.U16"] == 1
    assert tile["BRA"] == 1 and tile["EXIT"] == 1 and sum(tile.values()) == 11
    ks = sass_rules.KernelStats(TILE, "t", "u", {"regs": 40}, tile)
    cols = ks.columns()
    assert (cols["LDG.128"], cols["LDG"], cols["STG.128"], cols["STG"], cols["BAR"], cols["LDL/STL"]) == (2, 1, 1, 1, 1, 0)
    sp = sass_rules.KernelStats(SPILL, "s", "u", {}, r[SPILL]).columns()
    assert (sp["LDL/STL"], sp["HMMA"], sp["LDSM"], sp["LDGSTS"], sp["LDG.128"]) == (2, 1, 1, 1, 0)


def test_demangle_and_merge():
    m = sass_check.merge(sass_check.parse_ptxas(PTXAS), sass_check.parse_sass(SASS), "unit.cu")
    assert set(m) == {GEMM, SHUF, TILE, SPILL}
    if sass_check.shutil.which("c++filt"):
        assert m[TILE].name == ("void cnnkern::channel_shuffle_tile_kernel<unsigned short, false>"
                                "(cnnkern::ChannelShuffleTileParams<unsigned short>)")
    # Only in one of the two reports: the global rule says so.
    ok, _ = sass_rules.GLOBAL_RULES[0].check(m[GEMM])
    assert not ok


def _family(rules, pattern=r"tile_kernel"):
    return sass_rules.Family("t", "test", [], [sass_rules.KernelRules(pattern, rules)])


def test_rule_outcomes():
    m = sass_check.merge(sass_check.parse_ptxas(PTXAS), sass_check.parse_sass(SASS), "unit.cu")
    tile = {TILE: m[TILE]}
    tile[TILE].ptxas = {"regs": 40, "spill_stores": 0, "spill_loads": 0, "smem": 0}
    fam = _family([
        sass_rules.has("LDG.128"),                                   # PASS
        sass_rules.has("HMMA"),                                      # FAIL
        sass_rules.has("LDGSTS", expected_fail="not yet"),           # XFAIL
        sass_rules.max_regs(64, "x", expected_fail="was 70"),        # XPASS
        sass_rules.max_regs(32, "8 CTAs"),                           # FAIL
        sass_rules.lacks(r"^LDS\.U16$"),                              # FAIL (regex form)
    ])
    outcomes, matched = sass_check.evaluate(fam, tile)
    status = {o.rule: o.status for o in outcomes}
    assert status["has LDG.128"] == "PASS"
    assert status["has HMMA"] == "FAIL"
    assert status["has LDGSTS"] == "XFAIL"
    assert status["registers <= 64 (x)"] == "XPASS"
    assert status["registers <= 32 (8 CTAs)"] == "FAIL"
    assert status[r"no ^LDS\.U16$"] == "FAIL"
    assert status["no spills"] == "PASS" and status["no LDL/STL"] == "PASS"
    assert matched[TILE] == ["tile_kernel"]


def test_spills_and_local_memory_fail_globally():
    m = sass_check.merge(sass_check.parse_ptxas(PTXAS), sass_check.parse_sass(SASS), "unit.cu")
    outcomes, _ = sass_check.evaluate(sass_rules.Family("t", "test", [], []), {SPILL: m[SPILL]})
    status = {o.rule: o.status for o in outcomes}
    assert status["no spills"] == "FAIL" and status["no LDL/STL"] == "FAIL"


def test_pattern_without_kernel_fails():
    outcomes, _ = sass_check.evaluate(_family([sass_rules.has("BAR")], pattern="no_such_kernel"), {})
    assert [o.status for o in outcomes] == ["FAIL"]


def test_table_is_well_formed():
    names = [f.name for f in sass_rules.FAMILIES]
    assert len(names) == len(set(names))
    for fam in sass_rules.FAMILIES:
        assert fam.sources and fam.kernels, fam.name
        for src in fam.sources:
            if src.generated:
                assert list((ROOT / "csrc" / "cuda").glob(f"{src.generated}_*_bf16.cu")), src.generated
            else:
                # explicit instantiations, or the extension's launch file itself (conv2d_sm90)
                assert "template __global__" in src.snippet or re.search(r'#include "cuda/\w+\.cu"', src.snippet)
        for kr in fam.kernels:
            re.compile(kr.pattern)
            for rule in kr.rules:
                assert rule.expected_fail is None or rule.expected_fail.strip()


def test_flags_match_setup_py():
    # The check must compile with the extension's device flags: setup.py's nvcc list holds every one.
    text = (ROOT / "setup.py").read_text()
    nvcc = re.search(r'"nvcc":\s*\[([^\]]*)\]', text)
    assert nvcc, "setup.py's nvcc flag list moved: update sass_check.EXT_NVCC_FLAGS and this test"
    flags = re.findall(r'"([^"]+)"', nvcc.group(1))
    for f in sass_check.EXT_NVCC_FLAGS:
        assert f in flags, f


def test_launch_headers_need_only_the_shim():
    # The generated files are compiled torch-free; their launch headers may use no other torch header.
    allowed = set(sass_check.SHIM_HEADERS)
    for h in (ROOT / "csrc" / "cuda").glob("*_launch.cuh"):
        for inc in re.findall(r'#include <((?:c10|ATen|torch)/[^>]+)>', h.read_text()):
            assert inc in allowed, f"{h.name} includes {inc}: add it to SHIM_HEADERS or keep it out of the header"


def _tools():
    nvcc = sass_check.find_nvcc()
    cuobjdump = sass_check.find_cuobjdump()
    return nvcc, cuobjdump


def test_real_compile_one_kernel(tmp_path):
    nvcc, cuobjdump = _tools()
    if nvcc is None:
        pytest.skip("no nvcc (CUDA toolkit) on this machine")
    if cuobjdump is None:
        pytest.skip("no cuobjdump (triton/backends/nvidia/bin/cuobjdump or PATH)")
    src = tmp_path / "one.cu"
    src.write_text('#include "conv/channel_shuffle.cuh"\n'
                   "template __global__ void cnnkern::channel_shuffle_kernel<uint16_t, 8, true>("
                   "const cnnkern::ChannelShuffleParams<uint16_t>);\n")
    unit = sass_check.Unit("t", "one.cu", src)
    res = sass_check.compile_unit(unit, nvcc, cuobjdump, sass_check.write_shim(tmp_path / "shim"), tmp_path)
    assert res.error is None, res.error
    (ks,) = res.kernels.values()
    assert "channel_shuffle_kernel<unsigned short, 8, true>" in ks.name or "channel_shuffle_kernel" in ks.mangled
    assert 0 < ks.ptxas["regs"] <= 255
    cols = ks.columns()
    assert cols["LDG.128"] >= 1 and cols["STG.128"] >= 1 and cols["LDL/STL"] == 0
    assert isinstance(ks.ops, Counter) and cols["total"] > 10


def test_family_rule_overrides_global_spill_rule():
    # known_spills() replaces the global spill rules for the kernels it matches (XFAIL, then XPASS once fixed).
    m = sass_check.merge(sass_check.parse_ptxas(PTXAS), sass_check.parse_sass(SASS), "unit.cu")
    fam = sass_rules.Family("t", "test", [], [sass_rules.KernelRules("spill|5spill", sass_rules.known_spills("known"))])
    outcomes, _ = sass_check.evaluate(fam, {SPILL: m[SPILL], TILE: m[TILE]})
    spill = {o.rule: o.status for o in outcomes if o.kernel == m[SPILL].name}
    assert spill["no spills"] == "XFAIL" and spill["no LDL/STL"] == "XFAIL"
    assert sum(1 for o in outcomes if o.kernel == m[SPILL].name and o.rule == "no spills") == 1
    tile = {o.rule: o.status for o in outcomes if o.kernel == m[TILE].name}
    assert tile["no spills"] == "PASS"


def test_spills_at_cap_warns_only_at_the_cap_and_within_the_bytes():
    # The spill kernel: 255 registers, 36 bytes spill stores, 28 loads, LDL/STL in its SASS.
    m = sass_check.merge(sass_check.parse_ptxas(PTXAS), sass_check.parse_sass(SASS), "unit.cu")

    def status(cap, max_bytes):
        fam = sass_rules.Family("t", "test", [], [
            sass_rules.KernelRules("spill", sass_rules.spills_at_cap(cap, max_bytes, "load-dependent"))])
        outcomes, _ = sass_check.evaluate(fam, {SPILL: m[SPILL]})
        got = {o.rule: o.status for o in outcomes}
        assert sum(1 for o in outcomes if o.rule == "no spills") == 1  # replaced the global rule
        return got["no spills"], got["no LDL/STL"]

    assert status(255, 36) == ("WARN", "WARN")
    assert status(255, 35) == ("FAIL", "FAIL")   # more bytes than tolerated
    assert status(254, 64) == ("FAIL", "FAIL")   # below the cap a spill is never tolerated
    fam = sass_rules.Family("t", "test", [], [sass_rules.KernelRules("tile", sass_rules.spills_at_cap(255, 64, "x"))])
    tile = {o.rule: o.status for o in sass_check.evaluate(fam, {TILE: m[TILE]})[0]}
    assert (tile["no spills"], tile["no LDL/STL"]) == ("PASS", "PASS")


def test_dtype_bound_pattern_skipped_when_dtype_not_compiled():
    fam = sass_rules.Family("t", "test", [], [sass_rules.KernelRules("no_such", [sass_rules.has("BAR")], dtype="f16")])
    assert sass_check.evaluate(fam, {}, ["bf16", "f32"])[0] == []
    assert [o.status for o in sass_check.evaluate(fam, {}, ["f16"])[0]] == ["FAIL"]


# sm_90a opcodes (cuobjdump 13.1 on the wgmma conv2d forward): the shape modifier of HGMMA has a lower-case
# "x", which the parser keeps, so that a rule can tell m64n128k16 from m64n64k16.
SASS_SM90A = """
\t\tFunction : _ZN7cnnkern4sm9022conv2d_fwd_sm90_kernelI6__halfLNS_7EpiKindE0ELi128EEEv14CUtensorMap_stNS0_7FwdArgsIT_XT0_EXT1_EEE
        /*0a00*/                   HGMMA.64x128x16.F32 R24, gdesc[UR4], R24 ;                 /* 0x00e00000041879f0 */
        /*0a10*/                   HGMMA.64x128x16.F32 R24, gdesc[UR8], R24, gsb0 ;           /* 0x00e00000081879f0 */
        /*0a20*/                   WARPGROUP.DEPBAR.LE gsb0, 0x1 ;                            /* 0x00000000000079af */
        /*1f940*/                   UTMALDG.2D [UR4], [UR30] ;                               /* 0x000000041e0075b4 */
        /*01b0*/                   SYNCS.EXCH.64 URZ, [UR10], UR4 ;                          /* 0x000000040a3f75b2 */
        /*0040*/                   LDGSTS.E.BYPASS.LTC128B.128 [R3], desc[UR4][R6.64] ;       /* 0x0000000006037fae */
"""


def test_parse_sass_sm90a_shapes():
    (ops,) = sass_check.parse_sass(SASS_SM90A).values()
    assert ops["HGMMA.64x128x16.F32"] == 2 and ops["UTMALDG.2D"] == 1 and ops["WARPGROUP.DEPBAR.LE"] == 1
    ks = sass_rules.KernelStats("k", "k", "u", {"regs": 110}, ops)
    assert ks.count(r"^HGMMA\.64x128x16") == 2 and ks.count(r"^HGMMA\.64x64x16") == 0
    assert ks.count("UTMALDG") == 1 and ks.count(r"^SYNCS") == 1 and ks.count("LDGSTS") == 1


def test_sm90a_families_compile_for_sm90a():
    fams = {f.name: f for f in sass_rules.FAMILIES}
    sm90a = {"conv2d_sm90": "conv2d_fwd_sm90.cu", "conv2d_wgrad_sm90": "conv2d_wgrad_sm90.cu"}
    assert all(fams[n].arch == "sm_90a" for n in sm90a)
    assert all(f.arch == "sm_90" for n, f in fams.items() if n not in sm90a)
    for name, launch_file in sm90a.items():
        (unit,) = sass_check.units_for(fams[name], ["f16"], Path(__import__("tempfile").mkdtemp()))
        assert unit.arch == "sm_90a" and launch_file in unit.path.read_text()


def test_parse_sass_keeps_the_wgmma_transpose_modifiers():
    # The weight gradient's MN-major operands show only as operand modifiers; parse_sass keeps them on the
    # opcode so that a rule can require them (conv2d_wgrad_sm90) or forbid them (conv2d_sm90).
    text = SASS_SM90A.replace("gdesc[UR4], R24", "gdesc[UR4].tnspA.tnspB, R24", 1)
    (ops,) = sass_check.parse_sass(text).values()
    assert ops["HGMMA.64x128x16.F32.TNSPA.TNSPB"] == 1 and ops["HGMMA.64x128x16.F32"] == 1
    ks = sass_rules.KernelStats("k", "k", "u", {"regs": 90}, ops)
    assert ks.count(r"^HGMMA\.64x128x16\..*\.TNSPA\.TNSPB$") == 1 and ks.count(r"^HGMMA(?!.*\.TNSPA\.TNSPB$)") == 1


# cuobjdump -res-usage of a cubin (cuobjdump 13.1): a kernel without shared memory and one with 400 bytes of
# __shared__ (SHARED adds the 1 KiB the toolchain reserves) and a 640-byte stack frame.
RES_USAGE = """
Resource usage:
 Common:
  GLOBAL:0
 Function _ZN7cnnkern22channel_shuffle_kernelItLi8ELb1EEEvNS_20ChannelShuffleParamsIT_EE:
  REG:32 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:712 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _Z5spillPfi:
  REG:32 STACK:640 SHARED:1424 LOCAL:0 CONSTANT[0]:540 TEXTURE:0 SURFACE:0 SAMPLER:0
"""


def test_parse_res_usage_and_binary_spill_rule():
    res = sass_check.parse_res_usage(RES_USAGE)
    shuf = "_ZN7cnnkern22channel_shuffle_kernelItLi8ELb1EEEvNS_20ChannelShuffleParamsIT_EE"
    assert res[shuf] == {"regs": 32, "stack": 0, "smem": 0, "local": 0}
    assert res["_Z5spillPfi"] == {"regs": 32, "stack": 640, "smem": 400, "local": 0}
    # A binary keeps no spill counts: the stack frame stands in for them, in the global rule and at the cap.
    ok = sass_rules.KernelStats("a", "a", "u", res[shuf], Counter({"EXIT": 1}))
    bad = sass_rules.KernelStats("b", "b", "u", res["_Z5spillPfi"], Counter({"EXIT": 1}))
    assert sass_rules.spill_bytes(bad) == (640, 640) and sass_rules.spill_bytes(ok) == (0, 0)
    assert sass_rules._no_spills(ok)[0]
    passed, detail = sass_rules._no_spills(bad)
    assert not passed and "640 bytes stack frame" in detail
    at_cap = sass_rules.spills_at_cap(32, 640, "test")[0]
    assert at_cap.tolerate(bad) and not sass_rules.spills_at_cap(32, 639, "test")[0].tolerate(bad)


def test_binary_read_agrees_with_ptxas(tmp_path):
    # The same cubin read both ways: ptxas -v while compiling, and cuobjdump -res-usage afterwards.
    nvcc, cuobjdump = _tools()
    if nvcc is None or cuobjdump is None:
        pytest.skip("needs nvcc and cuobjdump")
    src = tmp_path / "two.cu"
    src.write_text('#include "conv/channel_shuffle.cuh"\n'
                   "template __global__ void cnnkern::channel_shuffle_tile_kernel<uint16_t, true, false>("
                   "const cnnkern::ChannelShuffleTileParams<uint16_t>);\n"
                   "__global__ void spill(float* p, int n) {\n"  # forced to spill by -maxrregcount=32
                   "  float a[48];\n"
                   "  for (int i = 0; i < 48; ++i) a[i] = p[i * n + threadIdx.x];\n"
                   "  for (int k = 0; k < n; ++k)\n"
                   "    for (int i = 0; i < 48; ++i) a[i] = a[i] * a[(i + k) % 48] + 1.f;\n"
                   "  float s = 0;\n"
                   "  for (int i = 0; i < 48; ++i) s += a[i];\n"
                   "  __shared__ float sh[100];\n"  # 400 bytes of static shared memory (+1 KiB in SHARED)
                   "  sh[threadIdx.x % 100] = s;\n"
                   "  __syncthreads();\n"
                   "  p[threadIdx.x] = sh[(threadIdx.x + 1) % 100];\n"
                   "}\n")
    cubin = tmp_path / "two.cubin"
    res = __import__("subprocess").run(
        [nvcc, "-std=c++20", "-O3", f"-I{ROOT / 'kernels'}", "-arch=sm_90a", "-cubin", "-Xptxas", "-v",
         "-maxrregcount=32", "-o", str(cubin), str(src)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    compiled = sass_check.parse_ptxas(res.stderr + res.stdout)
    read = sass_check.read_unit(sass_check.Unit("t", "two.cu", cubin, "sm_90a"), cuobjdump)
    assert read.error is None, read.error
    assert set(read.kernels) == set(compiled) and len(compiled) == 2
    for name, ks in read.kernels.items():
        for key in ("regs", "stack", "smem"):
            assert ks.ptxas[key] == compiled[name][key], (name, key)
    (tile,) = [ks for ks in read.kernels.values() if "tile" in ks.mangled]
    assert sass_rules._no_spills(tile)[0] and tile.columns()["LDG.128"] >= 1
    (sp,) = [ks for ks in read.kernels.values() if "spill" in ks.mangled]
    assert sp.ptxas["smem"] == 400 and sp.ptxas["stack"] > 0 and not sass_rules._no_spills(sp)[0]


def test_snippet_sources_name_an_extension_unit():
    # --binary finds a snippet family's kernels in the cubin of the translation unit Source.binary names.
    for fam in sass_rules.FAMILIES:
        for src in fam.sources:
            if not src.generated:
                assert src.binary and (ROOT / "csrc" / "cuda" / f"{src.binary}.cu").is_file(), (fam.name, src)


def test_binary_units_of_the_built_extension(tmp_path):
    so = sass_check.find_extension()
    cuobjdump = _tools()[1]
    if so is None or cuobjdump is None:
        pytest.skip("needs the built extension (cnnkern/_C*.so) and cuobjdump")
    fams = {f.name: f for f in sass_rules.FAMILIES}
    try:
        units = sass_check.binary_units([fams["channel_shuffle"]], ["f16"], so, cuobjdump, tmp_path)
    except sass_check.SetupError as e:
        pytest.skip(f"the extension has no sm_90 code: {e}")
    (unit,) = units
    assert unit.label == "csrc/cuda/channel_map.cu" and unit.path.is_file()
    res = sass_check.read_unit(unit, cuobjdump)
    assert res.error is None and len(res.kernels) >= 10
    outcomes, matched = sass_check.evaluate(fams["channel_shuffle"], res.kernels)
    assert all(matched.values()), "every channel_map kernel matches a channel_shuffle pattern"
    assert not [o for o in outcomes if o.status == "FAIL"], [o for o in outcomes if o.status == "FAIL"]
