"""The price of a portable llama.cpp build: native vs portable, same model, same candidates, one run.

negclean builds llama-cpp-python with ``GGML_NATIVE=OFF`` and a fixed x86-64 instruction set (AVX2, FMA, F16C:
scripts/install-llama.sh), because a build made for the build machine's CPU (AVX-512, AMX) crashes on other CPUs.
This benchmark measures what that costs on the machine it runs on. Each build is a folder holding an installed
``llama_cpp`` package (``pip install --no-deps --target DIR WHEEL``; ``--wheel NAME=WHEEL`` does that for you); each
measurement runs in a fresh child process with that folder first on ``sys.path``, builds interleaved
(A B A B ...), and reports medians and the ratio portable / native.

Two measurements per child, on the default judge model (Qwen2.5-Coder-1.5B Q4_K_M):
- **prefill**: ``Llama.eval`` of a fixed 512-token real passage prompt, tokens per second (best of 3 in the child);
- **judge**: the ``llamacpp`` judge, pointwise with prefix reuse, on ``--queries`` x ``--candidates`` TREC DL 2019
  pairs (as ``bench_local_judge.py`` picks them): candidates per second, and every P(yes) so that the builds'
  verdicts can be compared (different kernels round differently).

    python benchmarks/bench_llama_build.py --wheel native=/tmp/native/llama_cpp_python-0.3.36-*.whl \
        --wheel portable=~/.cache/negclean/wheels/llama-cpp-python-0.3.36-*/llama_cpp_python-0.3.36-*.whl \
        --threads 2 --repeat 3 --out /tmp/llama_build.json

Results: benchmarks/RESULTS-local-judge.md ("Portable vs native build").
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def worker(args: argparse.Namespace) -> int:
    """Runs inside the child: the build's folder is first on sys.path (set by the parent)."""
    import llama_cpp

    site = Path(os.environ["NEGCLEAN_BENCH_BUILD_DIR"]).resolve()
    if site not in Path(llama_cpp.__file__).resolve().parents:
        print(f"llama_cpp imported from {llama_cpp.__file__}, not from {site}", file=sys.stderr)
        return 2
    from bench_local_judge import load_tasks, shared_dl19
    from negclean.judge.config import LlamaCppJudgeConfig, build_judge
    from negclean.judge.gguf_models import resolve_model

    model_path = str(resolve_model(args.model))
    tasks, _ = load_tasks(shared_dl19(), queries=args.queries, candidates=args.candidates, seed=0)
    out: dict = {"system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()}

    llm = llama_cpp.Llama(model_path, n_ctx=1024, n_threads=args.threads, n_batch=512, verbose=False)
    text = " ".join(p.text for t in tasks for p in t.passages)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False)[:512]
    best = 0.0
    for _ in range(3):
        llm.reset()
        start = time.perf_counter()
        llm.eval(tokens)
        best = max(best, len(tokens) / (time.perf_counter() - start))
    out["prefill_tokens_per_s"] = best
    del llm

    judge = build_judge(LlamaCppJudgeConfig(model=args.model, n_threads=args.threads))
    try:
        start = time.perf_counter()
        results = judge.judge(tasks)
        seconds = time.perf_counter() - start
    finally:
        close = getattr(judge, "close", None)
        if close is not None:
            close()
    n = sum(len(t.candidates) for t in tasks)
    out["judge_candidates_per_s"] = n / seconds
    out["candidates"] = n
    out["p_yes"] = [v.confidence for r in results for v in r.verdicts]
    out["labels"] = [v.label.value for r in results for v in r.verdicts]
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def install(spec: str, root: Path) -> tuple[str, Path]:
    name, _, wheel = spec.partition("=")
    paths = sorted(glob.glob(os.path.expanduser(wheel)))
    if len(paths) != 1:
        raise SystemExit(f"--wheel {spec}: expected one wheel file, found {paths or 'none'}")
    target = root / name
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), paths[0]], check=True
    )
    return name, target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", action="append", default=[], help="NAME=WHEEL (installed into a temporary folder)")
    parser.add_argument("--build", action="append", default=[], help="NAME=DIR (a folder with llama_cpp installed)")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    tmp = Path(tempfile.mkdtemp(prefix="negclean-llama-builds-"))
    builds = [install(spec, tmp) for spec in args.wheel]
    builds += [(spec.partition("=")[0], Path(spec.partition("=")[2]).expanduser()) for spec in args.build]
    if len(builds) < 2:
        parser.error("give at least two builds (--wheel or --build)")
    runs: dict[str, list[dict]] = {name: [] for name, _ in builds}
    for i in range(args.repeat):
        for name, site in builds:  # interleaved, so drifting machine load hits every build alike
            env = dict(
                os.environ,
                NEGCLEAN_BENCH_BUILD_DIR=str(site),
                PYTHONPATH=os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
            )
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "--model",
                args.model,
                "--queries",
                str(args.queries),
                "--candidates",
                str(args.candidates),
                "--threads",
                str(args.threads),
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                runs[name].append({"exit_code": proc.returncode, "stderr_tail": proc.stderr[-400:]})
                print(f"{name} run {i + 1}: exit {proc.returncode}\n{proc.stderr[-400:]}", flush=True)
                continue
            runs[name].append(json.loads(line[len("RESULT ") :]))
            r = runs[name][-1]
            print(
                f"{name} run {i + 1}: prefill {r['prefill_tokens_per_s']:.1f} tok/s, judge "
                f"{r['judge_candidates_per_s']:.3f} cand/s",
                flush=True,
            )

    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in runs[name] if key in r]
        return statistics.median(values) if values else None

    report: dict = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "builds": {},
    }
    for name, _ in builds:
        ok = [r for r in runs[name] if "p_yes" in r]
        report["builds"][name] = {
            "runs_ok": len(ok),
            "runs": len(runs[name]),
            "system_info": ok[0]["system_info"] if ok else None,
            "prefill_tokens_per_s_median": median(name, "prefill_tokens_per_s"),
            "prefill_tokens_per_s_all": [round(r["prefill_tokens_per_s"], 2) for r in ok],
            "judge_candidates_per_s_median": median(name, "judge_candidates_per_s"),
            "judge_candidates_per_s_all": [round(r["judge_candidates_per_s"], 4) for r in ok],
        }
    names = [name for name, _ in builds]
    base = "portable" if "portable" in runs else names[0]
    ref = next((r for r in runs[base] if "p_yes" in r), None)
    report["compared_with"] = base
    for other in names:
        if other == base:
            continue
        a, b = report["builds"][base], report["builds"][other]
        row: dict = {}
        for key in ("prefill_tokens_per_s_median", "judge_candidates_per_s_median"):
            if a[key] and b[key]:
                row[f"{base}_over_{other}_{key.rsplit('_median', 1)[0]}"] = round(a[key] / b[key], 3)
        mine = next((r for r in runs[other] if "p_yes" in r), None)
        if ref and mine:
            diffs = [abs(x - y) for x, y in zip(ref["p_yes"], mine["p_yes"]) if x is not None and y is not None]
            row["p_yes_max_abs_diff"] = max(diffs) if diffs else None
            row["labels_agree"] = f"{sum(x == y for x, y in zip(ref['labels'], mine['labels']))}/{len(ref['labels'])}"
        if not mine:
            row["failed"] = runs[other][0] if runs[other] else None
        report[f"{base}_vs_{other}"] = row
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if report["builds"][base]["runs_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
