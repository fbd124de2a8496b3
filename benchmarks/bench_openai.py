"""Throughput of the openai judge backend against a local OpenAI-compatible server.

The server (negclean.testing.openai_server, overlap-oracle answers) has a fixed service time and a
capacity of C requests at once, so the best any client can do is C / service_time calls per second.
The judge runs at concurrency C; we report judged candidates/s, tokens per candidate, and the ratio of
achieved to possible call throughput (goal >= 0.95).

    python benchmarks/bench_openai.py --candidates 2000 --listwise-candidates 10000 --delay 0.05 --capacity 4 8 16

Texts: the MS MARCO FlagEmbedding sample from ../shared/data when present (real passage lengths),
else synthetic passages. The server reports usage with a cheap approximation (prompt characters / 4:
exact counting costs ~7 ms of CPU per 25-passage prompt, which would make the server the bottleneck);
input tokens per candidate are counted exactly (o200k_base) outside the clock. Output tokens are the
oracle's short answers, not a real model's. The server runs in its own process, as a real server
would (``--in-process``: in a thread of this process, where it competes for the GIL). ``bare_ratio``
is the same ratio for a bare aiohttp client sending the same requests: what the machine allows.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

from negclean.data.records import Instance, Passage
from negclean.judge.base import JudgeTask
from negclean.judge.config import OpenAIJudgeConfig
from negclean.judge.listwise import chunk_calls
from negclean.judge.openai_chat import OpenAIJudge

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/flagembedding-samples/msmarco_hn_scored.jsonl"


def load_rows() -> tuple[list[dict], str]:
    if SAMPLE.exists():
        rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
        return rows, f"{SAMPLE.name} ({len(rows)} rows, cycled)"
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)]

    def text(n):
        return " ".join(rng.choice(vocab) for _ in range(n))

    rows = [{"query": text(8), "pos": [text(60)], "neg": [text(60) for _ in range(25)]} for _ in range(10)]
    return rows, "synthetic (10 rows x 25 negatives, 60 words each)"


def make_tasks(rows: list[dict], n_candidates: int, per_task: int) -> list[JudgeTask]:
    """Tasks of ``per_task`` candidates, ``n_candidates`` in all; cycled rows get distinct ids and query
    suffixes so that no two calls are identical."""
    tasks, made, i = [], 0, 0
    while made < n_candidates:
        row = rows[i % len(rows)]
        k = min(per_task, n_candidates - made, len(row["neg"]))
        negs = tuple(Passage(f"{i}-{j}", t) for j, t in enumerate(row["neg"][:k]))
        inst = Instance(f"q{i}", f"{row['query']} (#{i})", (Passage(f"{i}-p", row["pos"][0]),), negs)
        tasks.append(JudgeTask(inst, tuple(range(k))))
        made += k
        i += 1
    return tasks


class Server:
    """The test server in a child process (default) or in a thread."""

    def __init__(self, *, delay: float, capacity: int, in_process: bool) -> None:
        self.in_process = in_process
        if in_process:
            from negclean.testing.openai_server import OpenAITestServer

            self.srv = OpenAITestServer(delay=delay, max_concurrency=capacity, usage="approx").start()
            self.base_url = self.srv.base_url
        else:
            self.proc = subprocess.Popen(
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
            self.base_url = self.proc.stdout.readline().strip()
            if not self.base_url.startswith("http"):
                raise RuntimeError("the server process did not start")

    def close(self) -> None:
        if self.in_process:
            self.srv.stop()
        else:
            self.proc.stdin.close()
            self.proc.wait(15)


async def _baseline(base_url: str, bodies: list[dict], concurrency: int) -> float:
    """Seconds a bare aiohttp client (no openai, no negclean) needs for the same requests."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url.rstrip("/") + "/", connector=connector) as session:

        async def one(body: dict) -> None:
            async with gate:
                async with session.post("chat/completions", json=body) as response:
                    await response.json()

        await one(bodies[0])  # warm-up connection
        start = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - start


def request_bodies(tasks: list[JudgeTask], mode: str, reasoning: bool) -> list[dict]:
    template = "pointwise" if mode == "pointwise" else ("listwise" if reasoning else "listwise_brief")
    extra = {"max_tokens": 1, "logprobs": True, "top_logprobs": 5} if mode == "pointwise" else {"max_tokens": 4096}
    calls = chunk_calls(tasks, template=template, max_candidates=25, include_titles=False)
    return [{"model": "gpt-4o-mini", "messages": list(c.messages), "temperature": 0.1, **extra} for c in calls]


def bench(
    mode: str, tasks: list[JudgeTask], *, delay: float, capacity: int, in_process: bool, reasoning: bool, transport: str
) -> dict:
    server = Server(delay=delay, capacity=capacity, in_process=in_process)
    try:
        config = OpenAIJudgeConfig(
            model="gpt-4o-mini",
            mode=mode,
            reasoning=reasoning,
            base_url=server.base_url,
            concurrency=capacity,
            timeout=60,
            max_retries=2,
            transport=transport,
        )
        with OpenAIJudge(config) as judge:
            judge.judge(tasks[:2])  # warm-up: client, connections, BPE tables
            exact_in = sum(judge.estimate_tokens(t)[0] for t in tasks)  # o200k counts, outside the clock
            before = judge.stats.as_dict()
            cpu0, start = time.process_time(), time.perf_counter()
            results = judge.judge(tasks)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu0
            after = judge.stats.as_dict()
        baseline_s = asyncio.run(_baseline(server.base_url, request_bodies(tasks, mode, reasoning), capacity))
    finally:
        server.close()
    n = sum(len(t.candidates) for t in tasks)
    calls = after["calls"] - before["calls"]
    undecided = sum(v.label.value == "undecided" for r in results for v in r.verdicts)
    possible = capacity / delay
    # with calls not a multiple of C the last wave is partial: the best time is ceil(calls / C) waves
    best_s = -(-calls // capacity) * delay
    return {
        "mode": mode if mode == "pointwise" else f"listwise{'' if reasoning else '_brief'}",
        "transport": transport,
        "capacity": capacity,
        "candidates": n,
        "calls": calls,
        "seconds": round(elapsed, 3),
        "candidates_per_s": round(n / elapsed, 1),
        "calls_per_s": round(calls / elapsed, 1),
        "possible_calls_per_s": round(possible, 1),
        "ratio": round(calls / elapsed / possible, 3),
        "ratio_vs_waves": round(best_s / elapsed, 3),
        "baseline_ratio": round(calls / baseline_s / possible, 3),
        "judge_vs_baseline": round(baseline_s / elapsed, 3),
        "tokens_in_per_candidate": round(exact_in / n, 1),
        "server_tokens_in_per_candidate": round((after["tokens_in"] - before["tokens_in"]) / n, 1),
        "tokens_out_per_candidate": round((after["tokens_out"] - before["tokens_out"]) / n, 1),
        "delay_ms": round(delay * 1000),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "client_cpu_s": round(cpu, 2),
        "undecided": undecided,
        "failed_calls": after["failed"] - before["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=2000, help="pointwise: candidates (= calls) per run")
    parser.add_argument(
        "--listwise-candidates", type=int, default=10000, help="listwise: candidates per run (25 per call)"
    )
    parser.add_argument("--delay", type=float, nargs="+", default=[0.05], help="server service time(s), seconds")
    parser.add_argument("--capacity", type=int, nargs="+", default=[4, 8, 16], help="server capacity = concurrency")
    parser.add_argument("--modes", nargs="+", default=["pointwise", "listwise", "listwise_brief"])
    parser.add_argument("--in-process", action="store_true", help="server in a thread of this process")
    parser.add_argument("--transport", nargs="+", default=["auto"], choices=["auto", "aiohttp", "httpx"])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows, source = load_rows()
    print(
        f"# data: {source}; python {platform.python_version()}; server "
        f"{'in-process thread' if args.in_process else 'separate process'}; {os.cpu_count()} CPUs"
    )
    header = (
        "mode",
        "transport",
        "delay_ms",
        "C",
        "cands",
        "calls",
        "s",
        "cand/s",
        "calls/s",
        "possible",
        "ratio",
        "bare_ratio",
        "tok_in/c",
        "tok_out/c",
        "cpu_s",
        "undec",
        "load1",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    out = []
    for mode in args.modes:
        template_mode = "pointwise" if mode == "pointwise" else "listwise"
        per_task = 25
        n = args.candidates if mode == "pointwise" else args.listwise_candidates
        tasks = make_tasks(rows, n, per_task)
        for delay, capacity, transport in itertools.product(args.delay, args.capacity, args.transport):
            r = bench(
                template_mode,
                tasks,
                delay=delay,
                capacity=capacity,
                in_process=args.in_process,
                reasoning=mode == "listwise",
                transport=transport,
            )
            out.append(r)
            cells = (
                r["mode"],
                r["transport"],
                r["delay_ms"],
                r["capacity"],
                r["candidates"],
                r["calls"],
                r["seconds"],
                r["candidates_per_s"],
                r["calls_per_s"],
                r["possible_calls_per_s"],
                r["ratio"],
                r["baseline_ratio"],
                r["tokens_in_per_candidate"],
                r["tokens_out_per_candidate"],
                r["client_cpu_s"],
                r["undecided"],
                r["load_avg_1m"],
            )
            print("| " + " | ".join(str(x) for x in cells) + " |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
