"""Throughput and memory of negclean.data.io at BGE scale (1.6M instances, 1 positive + 8 negatives).

    python benchmarks/bench_io.py --instances 1600000            # full scale
    python benchmarks/bench_io.py --instances 100000 --gzip      # smaller, gzip in and out

Generates a synthetic Tevatron JSONL file (random Zipf-distributed words, ~60 words per passage, unique texts,
written with plain ``json``, not with negclean), then times, each in a fresh Python process so that peak RSS
(VmHWM) belongs to one step only:

- read: iterate the reader only (parse, validate, warnings checks)
- tevatron -> tevatron, tevatron -> flagembedding, tevatron -> parquet: read and write
- parquet -> tevatron: read the Parquet file back (row-group streaming) and write JSONL

Prints a Markdown table (instances/s by wall clock and by CPU time, which is what to compare on a shared machine;
MB/s of input; peak RSS) and, with --json, writes the numbers. --steps picks steps (default: all).
Outputs are deleted after each step unless --keep; the work directory defaults to a temporary one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB_SIZE = 30_000
WORDS = 60
NEGATIVES = 8
BLOCK = 50_000
STEPS = ("read", "tevatron", "flagembedding", "parquet", "parquet_read")


def _vocab(rng) -> list[str]:
    """VOCAB_SIZE distinct made-up words of 2-10 letters, letters drawn by English frequency."""
    import numpy as np

    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    freq = 1.0 / np.arange(1, 27) ** 0.8
    out: set[str] = set()
    while len(out) < VOCAB_SIZE:
        lengths = rng.integers(2, 11, size=VOCAB_SIZE)
        chars = rng.choice(letters, size=(VOCAB_SIZE, 10), p=freq / freq.sum())
        out.update("".join(row[:n]) for row, n in zip(chars.tolist(), lengths.tolist()))
    return sorted(out)[:VOCAB_SIZE]


def _texts(n: int, rng) -> list[tuple[str, list[str]]]:
    """n (query, [positive, negative x 8]) text tuples: ~60 Zipf-distributed made-up words per passage."""
    from operator import itemgetter

    import numpy as np

    vocab = _vocab(rng)
    rng.shuffle(vocab)  # so that frequent words are not the alphabetically first ones
    cdf = np.cumsum(1.0 / np.arange(1, VOCAB_SIZE + 1))
    cdf /= cdf[-1]
    # Zipf sampling by table look-up: uniform 16-bit numbers -> word ids (searchsorted per word is slow).
    table = np.searchsorted(cdf, (np.arange(1 << 16) + 0.5) / (1 << 16)).clip(0, VOCAB_SIZE - 1)
    out = []
    for start in range(0, n, 5_000):
        m = min(5_000, n - start)
        for rows in table[rng.integers(0, 1 << 16, size=(m, 2 + NEGATIVES, WORDS))].tolist():
            texts = [" ".join(itemgetter(*words)(vocab)).capitalize() + "." for words in rows[: 1 + NEGATIVES]]
            out.append((" ".join(itemgetter(*rows[-1][:8])(vocab)) + "?", texts))
    return out


def generate(path: Path, n: int, *, seed: int = 0) -> None:
    """Write n Tevatron rows of 1 positive + 8 negatives with unique ids.

    Texts come from a block of min(n, BLOCK) generated instances, repeated: the cost of reading and writing
    does not depend on which words a text holds, and nothing in negclean caches by text.
    """
    import gzip

    import numpy as np

    block = _texts(min(n, BLOCK), np.random.default_rng(seed))
    gz = path.name.endswith(".gz")
    docid = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=3) if gz else open(path, "w", encoding="utf-8") as f:
        lines = []
        for qid in range(n):
            query, texts = block[qid % len(block)]
            # The words are plain lower-case letters, so the JSON can be formatted without json.dumps.
            passages = []
            for text in texts:
                docid += 1
                passages.append(f'{{"docid": "{docid}", "title": "", "text": "{text}"}}')
            lines.append(
                f'{{"query_id": "{qid}", "query": "{query}", "positive_passages": [{passages[0]}], '
                f'"negative_passages": [{", ".join(passages[1:])}], "subset": "synthetic"}}'
            )
            if len(lines) == 5_000:
                f.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            f.write("\n".join(lines) + "\n")


def _peak_rss_mb() -> float:
    """High-water RSS of this process (VmHWM). ru_maxrss is no good here: Linux carries the parent's peak
    over into a child across fork and exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """One measured step, in its own process; prints one JSON line."""
    from negclean.data.io import open_writer, read_instances

    base_rss = _peak_rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    reader = read_instances(args.src, fmt=args.src_fmt)
    if args.dst:
        with open_writer(args.dst, fmt=args.dst_fmt) as w:
            for inst in reader:
                w.write(inst)
        count = w.count
    else:
        count = sum(1 for _ in reader)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    stats = reader.stats
    assert stats.read == stats.ok == count, stats
    out = {
        "instances": count,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "base_rss_mb": base_rss,
        "peak_rss_mb": _peak_rss_mb(),
        "warnings": dict(stats.warnings),
    }
    if args.dst:
        out["output_bytes"] = os.path.getsize(args.dst)
    print(json.dumps(out))


def run_step(name: str, src: Path, dst: Path | None, dst_fmt: str | None, src_fmt: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--src", str(src)]
    if src_fmt:
        cmd += ["--src-fmt", src_fmt]
    if dst is not None:
        cmd += ["--dst", str(dst), "--dst-fmt", dst_fmt]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"step {name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["step"] = name
    result["input_bytes"] = src.stat().st_size
    print(
        f"  {name}: {result['instances'] / result['seconds']:,.0f} inst/s, {result['seconds']:.1f} s "
        f"({result['cpu_seconds']:.1f} s CPU), peak RSS {result['peak_rss_mb']:.0f} MB",
        file=sys.stderr,
        flush=True,
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=1_600_000)
    ap.add_argument("--gzip", action="store_true", help="gzip the source and the JSON Lines outputs")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the generated and written files")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--steps", default="", help=f"comma-separated, from: {', '.join(STEPS)}")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--src-fmt", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    ap.add_argument("--dst-fmt", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    steps = args.steps.split(",") if args.steps else list(STEPS)
    unknown = set(steps) - set(STEPS)
    if unknown:
        sys.exit(f"unknown steps {sorted(unknown)}; choose from {', '.join(STEPS)}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_io."))
    work.mkdir(parents=True, exist_ok=True)
    ext = ".jsonl.gz" if args.gzip else ".jsonl"
    src = work / f"source{ext}"
    pq_path = work / "out.parquet"
    load_before = os.getloadavg()
    results = []
    try:
        t0 = time.perf_counter()
        generate(src, args.instances)
        gen_s = time.perf_counter() - t0
        print(
            f"generated {args.instances:,} instances, {src.stat().st_size / 1e6:,.0f} MB in {gen_s:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        for step in steps:
            if step == "read":
                results.append(run_step("read only (tevatron)", src, None, None))
                continue
            if step == "parquet_read":
                if not pq_path.exists():
                    run_step("(make parquet input)", src, pq_path, "parquet")
                dst, fmt, name, inp = work / f"back{ext}", "tevatron", "parquet -> tevatron", pq_path
            elif step == "parquet":
                dst, fmt, name, inp = pq_path, "parquet", "tevatron -> parquet", src
            else:
                dst, fmt, name, inp = work / f"out_{step}{ext}", step, f"tevatron -> {step}", src
            results.append(run_step(name, inp, dst, fmt))
            if not args.keep and dst != pq_path:
                dst.unlink()
    finally:
        if not args.keep:
            if args.workdir is None:
                shutil.rmtree(work, ignore_errors=True)
            else:
                for p in (src, pq_path):
                    p.unlink(missing_ok=True)
    load_after = os.getloadavg()

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\n{args.instances:,} instances (1 positive + {NEGATIVES} negatives, ~{WORDS} words each), "
        f"{'gzip' if args.gzip else 'plain'} JSON Lines; {machine}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; generating took {gen_s:.0f} s\n"
    )
    print(
        "| step | instances/s (wall) | instances/s (CPU) | wall s | CPU s | input MB/s (wall) | peak RSS MB | "
        "output MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        out_mb = f"{r['output_bytes'] / 1e6:,.0f}" if "output_bytes" in r else "-"
        print(
            f"| {r['step']} | {r['instances'] / r['seconds']:,.0f} | {r['instances'] / r['cpu_seconds']:,.0f} | "
            f"{r['seconds']:,.1f} | {r['cpu_seconds']:,.1f} | {r['input_bytes'] / 1e6 / r['seconds']:,.1f} | "
            f"{r['peak_rss_mb']:,.0f} | {out_mb} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "instances": args.instances,
                    "gzip": args.gzip,
                    "machine": machine,
                    "load_average": [load_before, load_after],
                    "generate_seconds": gen_s,
                    "steps": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
