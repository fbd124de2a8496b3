"""Ray engine vs local engine on this machine, and a projection of judging the BGE collection at scale.

    python benchmarks/bench_scale.py judge --instances 200 --delay 0.5 --capacity 16   # LLM-bound judging
    python benchmarks/bench_scale.py judge --instances 20 --screen                       # + MiniLM screen (CPU)
    python benchmarks/bench_scale.py mine --retriever bm25                               # scifact train, BM25
    python benchmarks/bench_scale.py project                                             # tokens, $, hours

judge: a cascade (duplicate screen [-> MiniLM similarity screen] -> listwise GPT-4o-mini-style judge) over N
MS MARCO instances (the 10 FlagEmbedding rows, cycled with distinct queries), the LLM played by the loopback
server in its own process with a fixed service time and capacity. Local engine (concurrency C) vs Ray engine
(2 workers on a local ``ray.init(num_cpus=2)``, concurrency C/2 each, so the server sees the same load);
both outputs must hash the same. Ray's start-up (``ray.init``) is timed apart from the run; the run's time
includes starting the actor pool. A rerun of the Ray engine reuses every shard.

mine: `negclean mine` over a BEIR folder (default ../shared/data/scifact, train), local vs Ray; the outputs
must hash the same.

project: input tokens per instance counted (o200k_base) on negclean's listwise prompts for the 25 real
MS MARCO instances of the RLHN reference, output tokens counted on the real GPT-4o-mini (stage 1) and GPT-4o
(stage 2) responses there; then tokens, dollars (online and Batch API prices) and hours for the 1.6M-instance
BGE collection with RLHN's cascade (stage 1 on everything, stage 2 on ~80% of the 486K MS MARCO instances).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "msmarco_hn_scored.jsonl"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load1() -> float:
    return round(os.getloadavg()[0], 1)


def cycled_input(n: int, folder: Path) -> Path:
    rows = [json.loads(line) for line in EXAMPLE.read_text().splitlines() if line.strip()]
    path = folder / f"msmarco_x{n}.jsonl"
    with open(path, "w") as fh:
        for i in range(n):
            row = dict(rows[i % len(rows)])
            row["query"] = f"{row['query']} (variant {i})"
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def start_server(delay: float, capacity: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "negclean.testing.openai_server",
            "--delay",
            str(delay),
            "--max-concurrency",
            str(capacity),
            "--usage",
            "approx",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def cascade(base_url: str, concurrency: int, *, screen: bool, chunk: int):
    from negclean.cascade.stages import CascadeConfig

    stages = [{"name": "dup", "judge": {"backend": "duplicate"}, "escalate": "cleared"}]
    if screen:
        stages.append({"name": "screen", "judge": {"backend": "similarity", "ratio": 0.9}, "escalate": "flagged"})
    stages.append(
        {
            "name": "llm",
            "judge": {
                "backend": "openai",
                "model": "gpt-4o-mini",
                "base_url": base_url,
                "concurrency": concurrency,
                "timeout": 600,
            },
        }
    )
    return CascadeConfig.model_validate({"stages": stages, "chunk_size": chunk})


def bench_judge(args: argparse.Namespace) -> None:
    import ray

    from negclean.pipeline import FixConfig, run_judge
    from negclean.scale.ray_judge import run_judge_ray
    from negclean.scale.runtime import RayOptions

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    src = cycled_input(args.instances, work)
    proc, url = start_server(args.delay, args.capacity)
    try:
        rows = []
        t, cpu = time.perf_counter(), _cpu()
        local = run_judge(
            input_path=str(src),
            cascade=cascade(url, args.capacity, screen=args.screen, chunk=args.chunk),
            output_dir=work / "local",
            fix=FixConfig(),
        )
        rows.append(("local", time.perf_counter() - t, 0.0, sha(work / "local" / "verdicts.jsonl"), load1()))
        cpu_ms = (_cpu() - cpu) / args.instances * 1000
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - t
        opts = RayOptions(shard_size=args.shard_size, workers=2)
        ray_cascade = cascade(url, max(1, args.capacity // 2), screen=args.screen, chunk=args.chunk)
        first: dict = {}
        for label in ("ray", "ray rerun (all shards reused)"):
            t = time.perf_counter()
            summary = run_judge_ray(
                input_path=str(src), cascade=ray_cascade, output_dir=work / "ray", fix=FixConfig(), ray_options=opts
            )
            first = first if label != "ray" else summary
            rows.append(
                (
                    label,
                    time.perf_counter() - t,
                    init if label == "ray" else 0.0,
                    sha(work / "ray" / "verdicts.jsonl"),
                    load1(),
                )
            )
        ray.shutdown()
    finally:
        proc.stdin.close()
        proc.wait(10)
    llm = local["cascade"]["stages"][-1]
    print(
        f"\n{args.instances} instances x 25 negatives; screen={args.screen}; server delay {args.delay} s, "
        f"capacity {args.capacity}; LLM calls {llm['tasks_sent']}; shards {summary['engine']['shards']} of "
        f"{summary['engine']['shard_size']}; {platform.python_version()}, {os.cpu_count()} CPUs\n"
    )
    print("| engine | run s | instances/s | ray.init s | verdicts sha256 | load1 |")
    print("|---|---|---|---|---|---|")
    for name, secs, init, digest, load in rows:
        print(f"| {name} | {secs:.1f} | {args.instances / secs:.2f} | {init:.1f} | `{digest}` | {load} |")
    print(
        f"\nidentical: {len({r[3] for r in rows}) == 1}; worker seconds (sum over shards): "
        f"{first['engine']['worker_seconds']}; local engine CPU (this process, all threads): "
        f"{cpu_ms:.1f} ms per instance"
    )


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_mine(args: argparse.Namespace) -> None:
    import ray

    from negclean.mine.mine import mine
    from negclean.scale.ray_mine import mine_ray
    from negclean.scale.runtime import RayOptions

    work = Path(tempfile.mkdtemp(prefix="bench-scale-mine-"))
    options = dict(
        beir=str(args.beir),
        split=args.split,
        retriever=args.retriever,
        rank_range="10:100",
        num_negatives=15,
        query_chunk=args.query_chunk,
        max_queries=args.max_queries,
    )
    rows = []
    t = time.perf_counter()
    local = mine(output=work / "local.jsonl", cache_dir=str(work / "cache-local"), **options)
    rows.append(("local", time.perf_counter() - t, 0.0, sha(work / "local.jsonl"), load1()))
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    init = time.perf_counter() - t
    for label in ("ray", "ray rerun (all shards reused)"):
        t = time.perf_counter()
        mine_ray(
            output=work / "ray.jsonl",
            cache_dir=str(work / "cache-ray"),
            ray_options=RayOptions(shard_size=args.shard_size, workers=2),
            **options,
        )
        rows.append((label, time.perf_counter() - t, init if label == "ray" else 0.0, sha(work / "ray.jsonl"), load1()))
    ray.shutdown()
    print(
        f"\nmine {args.beir.name} ({args.split}), {args.retriever}, {local.queries_mined} queries, corpus "
        f"{local.retriever.get('corpus_size')}; shards of {args.shard_size} queries\n"
    )
    print("| engine | run s | queries/s | ray.init s | output sha256 | load1 |")
    print("|---|---|---|---|---|---|")
    for name, secs, init, digest, load in rows:
        print(f"| {name} | {secs:.1f} | {local.queries_mined / secs:.1f} | {init:.1f} | `{digest}` | {load} |")
    print(f"\nidentical: {len({r[3] for r in rows}) == 1}")


# ---- projection

PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}  # USD per million tokens, online
BATCH = 0.5


def measured_tokens() -> dict:
    """Tokens per instance: our listwise prompts (input) and RLHN's real responses (output), o200k_base."""
    from negclean.data.io import read_instances
    from negclean.judge.base import JudgeTask
    from negclean.judge.tokens import count_tokens, estimate_tokens

    ref = SHARED / "rlhn-reference-msmarco"
    insts = list(read_instances(ref / "stage_1.gpt-4o-mini.jsonl", fmt="tevatron"))
    tin = [
        estimate_tokens(
            JudgeTask(i, tuple(range(len(i.negatives)))), template="listwise", max_candidates=25, include_titles=False
        )[0]
        for i in insts
    ]
    out = {}
    for model, name in (("gpt-4o-mini", "stage_1.gpt-4o-mini.jsonl"), ("gpt-4o", "stage_2.gpt-4o.jsonl")):
        rows = [json.loads(line) for line in (ref / name).read_text().splitlines() if line.strip()]
        out[model] = [count_tokens(r["response"]) for r in rows]
    return {
        "instances": len(insts),
        "negatives": statistics.mean(len(i.negatives) for i in insts),
        "in": statistics.mean(tin),
        "in_min": min(tin),
        "in_max": max(tin),
        "out_mini": statistics.mean(out["gpt-4o-mini"]),
        "out_4o": statistics.mean(out["gpt-4o"]),
        "chars_4o": statistics.mean(
            len(r)
            for r in [
                json.loads(x)["response"] for x in (ref / "stage_2.gpt-4o.jsonl").read_text().splitlines() if x.strip()
            ]
        ),
    }


def bench_project(args: argparse.Namespace) -> None:
    tok = measured_tokens()
    s1_n, s2_n = args.total, int(args.stage2_share * args.msmarco)
    rows = []
    for stage, model, n, t_out in (
        ("stage 1", "gpt-4o-mini", s1_n, tok["out_mini"]),
        ("stage 2", "gpt-4o", s2_n, tok["out_4o"]),
    ):
        t_in_total, t_out_total = n * tok["in"], n * t_out
        p_in, p_out = PRICES[model]
        online = (t_in_total * p_in + t_out_total * p_out) / 1e6
        tpm, rpm = (args.tpm_mini, args.rpm_mini) if model == "gpt-4o-mini" else (args.tpm_4o, args.rpm_4o)
        hours_online = max((t_in_total + t_out_total) / tpm, n / rpm) / 60
        rows.append((stage, model, n, t_in_total, t_out_total, online, online * BATCH, hours_online))
    print(
        f"\nmeasured on {tok['instances']} real MS MARCO instances ({tok['negatives']:.0f} negatives each), "
        f"o200k_base: input {tok['in']:.0f} tokens per instance (listwise with reasoning, one call; "
        f"{tok['in_min']}-{tok['in_max']}); output {tok['out_mini']:.0f} (GPT-4o-mini) and {tok['out_4o']:.0f} "
        f"(GPT-4o) tokens per instance ({tok['chars_4o']:.0f} characters)\n"
    )
    print(
        "| stage | model | instances | input tokens | output tokens | online $ | batch $ | online hours at TPM/RPM limit |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for stage, model, n, ti, to, on, ba, hrs in rows:
        print(
            f"| {stage} | {model} | {n:,} | {ti / 1e9:.2f} B | {to / 1e9:.2f} B | {on:,.0f} | {ba:,.0f} | {hrs:.1f} |"
        )
    tot_on, tot_ba = sum(r[5] for r in rows), sum(r[6] for r in rows)
    print(f"| total | | | | | **{tot_on:,.0f}** | **{tot_ba:,.0f}** | {sum(r[7] for r in rows):.1f} |")
    calls = s1_n + s2_n
    client_cpu_h = calls * args.client_ms / 1000 / 3600
    pipeline_cpu_h = calls * args.pipeline_ms / 1000 / 3600
    print(
        f"\nclient side: {calls:,} calls x {args.client_ms} ms (openai backend CPU per call, RESULTS-openai.md) "
        f"= {client_cpu_h:.1f} CPU-hours; read/route/store/write x {args.pipeline_ms} ms per instance = "
        f"{pipeline_cpu_h:.1f} CPU-hours"
    )
    print(json.dumps({"tokens": tok, "rows": rows}, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    j = sub.add_parser("judge")
    j.add_argument("--instances", type=int, default=200)
    j.add_argument("--delay", type=float, default=0.5, help="server service time per call (s)")
    j.add_argument("--capacity", type=int, default=16, help="server capacity and total client concurrency")
    j.add_argument("--shard-size", type=int, default=25)
    j.add_argument("--chunk", type=int, default=25, help="cascade chunk_size")
    j.add_argument("--screen", action="store_true", help="add a MiniLM similarity screen before the LLM")
    m = sub.add_parser("mine")
    m.add_argument("--beir", type=Path, default=SHARED / "scifact")
    m.add_argument("--split", default="train")
    m.add_argument("--retriever", default="bm25")
    m.add_argument("--query-chunk", type=int, default=64)
    m.add_argument("--shard-size", type=int, default=128)
    m.add_argument("--max-queries", type=int, default=None)
    p = sub.add_parser("project")
    p.add_argument("--total", type=int, default=1_600_000, help="instances judged by stage 1")
    p.add_argument("--msmarco", type=int, default=486_000)
    p.add_argument("--stage2-share", type=float, default=0.8, help="share of MS MARCO instances stage 2 sees")
    p.add_argument("--tpm-mini", type=float, default=150e6, help="tokens per minute allowed, GPT-4o-mini")
    p.add_argument("--tpm-4o", type=float, default=30e6, help="tokens per minute allowed, GPT-4o")
    p.add_argument("--rpm-mini", type=float, default=30_000, help="requests per minute allowed, GPT-4o-mini")
    p.add_argument("--rpm-4o", type=float, default=10_000, help="requests per minute allowed, GPT-4o")
    p.add_argument("--client-ms", type=float, default=1.5, help="client CPU per call (ms)")
    p.add_argument("--pipeline-ms", type=float, default=2.0, help="pipeline CPU per instance (ms)")
    args = parser.parse_args()
    {"judge": bench_judge, "mine": bench_mine, "project": bench_project}[args.what](args)


if __name__ == "__main__":
    main()
