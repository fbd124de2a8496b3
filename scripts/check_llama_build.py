"""Fails when the installed llama.cpp build uses instructions outside the portable set.

llama.cpp reports what its CPU backend was compiled with in ``llama_print_system_info()`` (``AVX2 = 1``, or
``CPU : SSE3 = 1 | AVX2 = 1 | ...`` in newer builds). A portable x86-64 build may use SSE3/SSSE3, AVX, AVX2, FMA,
F16C and BMI2; anything else there (AVX-512*, AMX*, AVX_VNNI, ...) means the wheel was compiled for the build machine and may
crash with SIGILL/SIGSEGV on another CPU. Usage: python scripts/check_llama_build.py
"""

from __future__ import annotations

import platform
import re
import sys

#: the instructions of ggml's x86-64 "haswell" level: every CPU with AVX2 (Intel since Haswell, AMD since Excavator/Zen)
#: also has FMA, F16C and BMI2; ggml turns BMI2 on with AVX2
PORTABLE_X86 = {"SSE3", "SSSE3", "AVX", "AVX2", "FMA", "F16C", "BMI2"}
# names that describe the build or the runtime, not an instruction set
NOT_ISA = {"LLAMAFILE", "OPENMP", "REPACK", "ACCELERATE", "KLEIDIAI", "MATMUL_INT8", "BLAS"}


def enabled_features(info: str) -> set[str]:
    return {name for name, value in re.findall(r"([A-Z0-9_]+) = (\d+)", info) if value != "0"}


def main() -> int:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    features = enabled_features(info) - NOT_ISA
    print(f"llama.cpp build: {info.strip()}")
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        print("not x86-64: the build used GGML_NATIVE=OFF (compiler baseline); nothing more to check")
        return 0
    extra = sorted(features - PORTABLE_X86)
    if extra:
        print(
            f"error: this llama.cpp build uses {', '.join(extra)}, which not every x86-64 CPU has; it may crash "
            "(SIGILL/SIGSEGV) elsewhere. Rebuild with scripts/install-llama.sh (GGML_NATIVE=OFF).",
            file=sys.stderr,
        )
        return 1
    print(f"portable: {', '.join(sorted(features)) or 'baseline'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
