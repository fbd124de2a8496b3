"""Benchmark: judge -> fix throughput and peak memory of the pipeline itself, and the cost of a rerun.

Two parts, each run as a child process so that peak RSS is measured per part:
  fix     generate N instances (Tevatron JSONL, 1 positive + 8 negatives) and a verdicts file for them, then
          time `run_fix` (relabel) and report instances/s and peak RSS; run at two sizes to show memory is flat.
  rerun   judge N instances x 25 negatives with the `openai` backend (listwise) against the local
          OpenAI-compatible test server with a fixed service time, then judge again: the rerun finds every
          verdict in the store and makes no request. Reports both wall times and the server's request counts.

  python benchmarks/bench_pipeline.py fix --instances 200000 20000
  python benchmarks/bench_pipeline.py rerun --instances 2000 --delay 0.05 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "retrieval dense passage query model training negative positive relevant label judge cascade corpus "
    "index vector score rank answer question document embedding contrastive batch loss"
).split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def generate(path: Path, verdicts: Path | None, n: int, negs: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    pool = [_text(rng, 60) for _ in range(4096)]  # passages drawn from a pool: generation stays fast at 1.6M
    with open(path, "w") as fh, open(verdicts, "w") if verdicts else open(os.devnull, "w") as vf:
        for i in range(n):
            negatives = [
                {"docid": f"d{i}-{j}", "title": "", "text": pool[rng.randrange(4096)] + f" {i}.{j}"}
                for j in range(negs)
            ]
            row = {
                "query_id": f"q{i}",
                "query": _text(rng, 8),
                "subset": "synthetic",
                "positive_passages": [{"docid": f"p{i}", "title": "", "text": pool[rng.randrange(4096)] + f" {i}"}],
                "negative_passages": negatives,
            }
            fh.write(json.dumps(row) + "\n")
            if verdicts:
                fns = [j for j in range(negs) if rng.random() < 0.1]
                cands = [
                    {
                        "docid": f"d{i}-{j}",
                        "stage": "s",
                        "label": "relevant" if j in fns else "not_relevant",
                        "judge": "synthetic",
                        **({"grade": "better"} if j in fns else {}),
                        "audited": False,
                        "trail": [],
                    }
                    for j in range(negs)
                ]
                vf.write(
                    json.dumps(
                        {
                            "line": i + 1,
                            "query_id": f"q{i}",
                            "false_negatives": [f"d{i}-{j}" for j in fns],
                            "false_negative_index": fns,
                            "ambiguous": False,
                            "candidates": cands,
                        }
                    )
                    + "\n"
                )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_fix(n: int, workdir: Path) -> dict:
    from negclean.fix.operations import Operation
    from negclean.pipeline import run_fix

    inp, ver, out = workdir / f"in-{n}.jsonl", workdir / f"verdicts-{n}.jsonl", workdir / f"out-{n}.jsonl"
    t0 = time.perf_counter()
    generate(inp, ver, n, 8)
    gen_s = time.perf_counter() - t0
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    res = run_fix(input_path=str(inp), verdicts_path=str(ver), output_path=str(out), operation=Operation.RELABEL)
    secs = time.perf_counter() - t0
    return {
        "part": "fix",
        "instances": n,
        "generate_s": round(gen_s, 1),
        "fix_s": round(secs, 1),
        "instances_per_s": round(n / secs),
        "input_mb": round(inp.stat().st_size / 1e6),
        "peak_rss_mb_before_fix": round(rss_before),
        "peak_rss_mb": round(peak_rss_mb()),
        "reconciled": res["reconciled"],
        "relabeled": res["fix"]["relabeled"],
    }


def child_rerun(n: int, delay: float, concurrency: int, workdir: Path) -> dict:
    from negclean.cascade.stages import CascadeConfig
    from negclean.pipeline import run_judge
    from negclean.testing.openai_server import OpenAITestServer

    inp = workdir / f"rerun-{n}.jsonl"
    generate(inp, None, n, 25, seed=1)
    with OpenAITestServer(delay=delay) as srv:
        cfg = CascadeConfig.model_validate(
            {
                "stages": [
                    {
                        "name": "llm",
                        "judge": {
                            "backend": "openai",
                            "model": "bench-model",
                            "mode": "listwise",
                            "reasoning": False,
                            "base_url": srv.base_url,
                            "concurrency": concurrency,
                        },
                    }
                ],
                "chunk_size": 256,
            }
        )
        out = workdir / "rerun-run"
        t0 = time.perf_counter()
        first = run_judge(input_path=str(inp), cascade=cfg, output_dir=out)
        first_s = time.perf_counter() - t0
        calls_first = srv.requests.count
        t0 = time.perf_counter()
        second = run_judge(input_path=str(inp), cascade=cfg, output_dir=out)
        second_s = time.perf_counter() - t0
        calls_second = srv.requests.count - calls_first
    st1, st2 = first["cascade"]["stages"][0], second["cascade"]["stages"][0]
    return {
        "part": "rerun",
        "instances": n,
        "candidates": n * 25,
        "service_time_s": delay,
        "concurrency": concurrency,
        "first_run_s": round(first_s, 2),
        "first_run_requests": calls_first,
        "first_judged": st1["judged"],
        "rerun_s": round(second_s, 2),
        "rerun_requests": calls_second,
        "rerun_from_store": st2["from_store"],
        "speedup": round(first_s / second_s, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["fix", "rerun"])
    ap.add_argument("--instances", type=int, nargs="+", default=[20000])
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        wd = Path(args.workdir)
        res = (
            child_fix(args.instances[0], wd)
            if args.part == "fix"
            else child_rerun(args.instances[0], args.delay, args.concurrency, wd)
        )
        print(json.dumps(res))
        return
    with tempfile.TemporaryDirectory(prefix="negclean-bench-") as wd:
        for n in args.instances:
            cmd = [
                sys.executable,
                __file__,
                args.part,
                "--instances",
                str(n),
                "--delay",
                str(args.delay),
                "--concurrency",
                str(args.concurrency),
                "--child",
                "--workdir",
                wd,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
