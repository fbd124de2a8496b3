"""The installed llama.cpp build is portable: no instruction beyond the AVX2 level (issue: a native build
segfaulted on an Intel Sapphire Rapids machine). Fails on a wheel built with GGML_NATIVE=ON on this AVX-512 machine."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "scripts" / "check_llama_build.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_llama_build", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checker_reads_both_system_info_layouts():
    check = _checker()
    old = "AVX = 1 | AVX_VNNI = 0 | AVX2 = 1 | AVX512 = 1 | FMA = 1 | NEON = 0 | LLAMAFILE = 1 |"
    new = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | AMX_INT8 = 1 |"
    assert check.enabled_features(old) - check.NOT_ISA == {"AVX", "AVX2", "AVX512", "FMA"}
    assert {"AVX512", "AMX_INT8"} <= check.enabled_features(new) - check.PORTABLE_X86


def test_installed_llama_cpp_build_is_portable():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra 'llamacpp')")
    proc = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "llama.cpp build:" in proc.stdout
