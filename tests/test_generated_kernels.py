"""The explicit-instantiation files csrc/cuda/*_{f32,f16,bf16}.cu are generated from one table by
scripts/generate_kernels.py and committed; CI fails here when they drift from the table."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "generate_kernels.py"


def test_generated_kernel_files_are_up_to_date():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
