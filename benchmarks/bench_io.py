"""Throughput and memory of negclean.data.io at BGE scale (1.6M instances, 1 positive + 8 negatives).

    python benchmarks/bench_io.py --instances 1600000            # full scale
    python benchmarks/bench_io.py --instances 100000 --gzip      # smaller, gzip in and out

Generates a synthetic Tevatron JSONL file (random Zipf-distributed words, ~60 words per passage, unique texts,
written with plain ``json``, not with negclean), then times, each in a fresh Python process so that peak RSS
(VmHWM) belongs to one step only:

- copy: the input's bytes to a new file in 1 MB blocks, then fsync: no parsing, the machine's floor for a step
  that reads and writes that much (on a VM the kernel's share, "sys", varies with how its memory is backed)
- read: iterate the reader only (parse, validate, warnings checks)
- tevatron -> tevatron, tevatron -> flagembedding, tevatron -> parquet: ``negclean.data.io.convert`` (read and
  write, lines that need no change copied without records; with a --baseline that predates ``convert``, the
  record loop below)
- records: tevatron -> tevatron by the record loop of ``negclean.data.io``'s docstring (``read_instances``, then
  ``open_writer(like=reader).write`` for every Instance): what a Python caller that handles records pays
- parquet -> tevatron: read the Parquet file back (row-group streaming) and write JSONL
- fix (relabel): ``negclean.pipeline.run_fix`` with a verdicts file that flags --flag-rate of the candidates
  (independently, by a seeded random generator, so every run flags the same ones), Tevatron JSONL out
- parquet_fix: the same fix from the Tevatron Parquet of the parquet step to Parquet

--compare runs every step a second time with the fast JSON path off (``NEGCLEAN_FAST_JSON=0``, the code as it
was before it), prints the CPU ratio and checks that both wrote the same bytes (sha256; for gzip outputs that
differ as bytes, whether they hold the same lines: "gunzipped").

Prints a Markdown table (instances/s by wall clock and by CPU time, which is what to compare on a shared machine,
with CPU split into user (the step's own code) and sys (the kernel: mostly page-cache writes); MB/s of input;
peak RSS) and, with --json, writes the numbers. --steps picks steps (default: all). --repeat N runs each step
N times (old and new alternating with --compare) and keeps each one's run with the least CPU.
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
STEPS = ("copy", "read", "tevatron", "records", "flagembedding", "parquet", "parquet_read", "fix", "parquet_fix")


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


def generate_verdicts(path: Path, n: int, rate: float) -> int:
    """A verdicts.jsonl for the file of ``generate`` (docids 9q+1 .. 9q+9): negatives flagged at ``rate`` are
    relevant by the "llm" stage, the others not relevant by the "screen" stage. Returns the flagged count."""
    import random

    rng = random.Random(0)  # the same candidates every run
    flagged = 0
    with open(path, "w", encoding="utf-8") as f:
        lines = []
        for qid in range(n):
            cands, fns = [], []
            for j in range(NEGATIVES):
                docid = str(qid * (1 + NEGATIVES) + 2 + j)
                screen = {"stage": "screen", "label": "not_relevant", "judge": "similarity", "confidence": 0.2}
                if rng.random() < rate:
                    fns.append(j)
                    llm = {"stage": "llm", "label": "relevant", "judge": "local", "grade": "better", "confidence": 0.9}
                    screen["label"] = "undecided"
                    cands.append({"docid": docid, **llm, "audited": False, "trail": [screen, llm]})
                else:
                    cands.append({"docid": docid, **screen, "audited": False, "trail": [screen]})
            flagged += len(fns)
            row = {
                "line": qid + 1,
                "query_id": str(qid),
                "false_negatives": [cands[j]["docid"] for j in fns],
                "false_negative_index": fns,
                "ambiguous": False,
                "candidates": cands,
            }
            lines.append(json.dumps(row, ensure_ascii=False))
            if len(lines) == 5_000:
                f.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            f.write("\n".join(lines) + "\n")
    return flagged


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
    import negclean
    from negclean.data.io import open_writer, read_instances

    print(f"negclean from {Path(negclean.__file__).parent}", file=sys.stderr)
    # Imports before the clock starts: instances/s is a rate, and a module loads once per process whatever the
    # size of the input (negclean.pipeline and its imports: ~0.4 s of CPU, 2 us a line at 200,000 lines).
    if args.verdicts:
        from negclean.fix.operations import Operation
        from negclean.pipeline import run_fix
    try:
        from negclean.data.io import convert
    except ImportError:  # a --baseline from before convert(): its equivalent is the record loop
        convert = None
    base_rss = _peak_rss_mb()
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    reader = converted = summary = None
    if args.copy:
        count = _copy(args.src, args.dst)
    elif args.verdicts:
        summary = run_fix(
            input_path=args.src,
            verdicts_path=args.verdicts,
            output_path=args.dst,
            operation=Operation.RELABEL,
            log_limit=0,
        )
        count = summary["read"]["ok"]
    elif args.dst and convert is not None and not args.records:
        converted, count = convert(args.src, args.dst, fmt=args.src_fmt, to=args.dst_fmt)
    else:
        reader = read_instances(args.src, fmt=args.src_fmt)
        if args.dst:
            # the record loop of negclean.data.io's docstring (also what a --baseline before convert() runs);
            # like=reader, as negclean's own commands open writers
            with open_writer(args.dst, fmt=args.dst_fmt, like=reader) as w:
                for inst in reader:
                    w.write(inst)
            count = w.count
        else:
            count = sum(1 for _ in reader)
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    out = {
        "instances": count,
        "seconds": seconds,
        "cpu_seconds": user + system,
        "user_seconds": user,
        "sys_seconds": system,
        "base_rss_mb": base_rss,
        "peak_rss_mb": _peak_rss_mb(),
    }
    if reader is not None or converted is not None:
        stats = reader.stats if reader is not None else converted
        assert stats.read == stats.ok == count, stats
        out["warnings"] = dict(stats.warnings)
    elif summary is not None:
        assert summary["reconciled"] and summary["read"]["rejected"] == 0, summary
        out["fix"] = summary["fix"]
    if args.dst:
        out["output_bytes"] = os.path.getsize(args.dst)
        out["output_sha256"] = _sha256(args.dst)
        if args.dst.endswith(".gz"):  # gzip bytes differ between compressors; what they hold must not
            out["content_sha256"] = _sha256(args.dst, gunzip=True)
    print(json.dumps(out))


def _copy(src: str, dst: str) -> int:
    """The bytes of ``src`` to ``dst`` as the writers write (1 MB blocks, fsync, rename); returns the lines."""
    lines = 0
    tmp = dst + ".tmp"
    with open(src, "rb") as f, open(tmp, "wb", buffering=1 << 20) as out:
        for block in iter(lambda: f.read(1 << 20), b""):
            lines += block.count(b"\n")
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dst)
    return lines


def _sha256(path: str, *, gunzip: bool = False) -> str:
    """sha256 of the file's bytes, or of what it holds once gunzipped (the standard library's gzip)."""
    import gzip
    import hashlib

    h = hashlib.sha256()
    with gzip.open(path, "rb") if gunzip else open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_step(
    name: str,
    src: Path,
    dst: Path | None,
    dst_fmt: str | None,
    src_fmt: str | None = None,
    *,
    verdicts: Path | None = None,
    fast: bool = True,
    baseline: Path | None = None,
    records: bool = False,
    copy: bool = False,
) -> dict:
    cmd = [sys.executable, __file__, "--child", "--src", str(src)]
    if records:
        cmd += ["--records"]
    if copy:
        cmd += ["--copy"]
    if src_fmt:
        cmd += ["--src-fmt", src_fmt]
    if dst is not None:
        cmd += ["--dst", str(dst)] + (["--dst-fmt", dst_fmt] if dst_fmt else [])
    if verdicts is not None:
        cmd += ["--verdicts", str(verdicts)]
    env = {**os.environ, "NEGCLEAN_FAST_JSON": "1" if fast else "0"}
    if baseline is not None:  # another copy of negclean's sources, imported ahead of the installed one
        env["PYTHONPATH"] = str(baseline / "src")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"step {name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["step"] = name
    result["negclean"] = next((ln[14:] for ln in proc.stderr.splitlines() if ln.startswith("negclean from ")), "?")
    result["input_bytes"] = src.stat().st_size
    print(
        f"  {name}: {result['instances'] / result['seconds']:,.0f} inst/s, {result['seconds']:.1f} s "
        f"({result['cpu_seconds']:.1f} s CPU), peak RSS {result['peak_rss_mb']:.0f} MB, negclean {result['negclean']}",
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
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also run every step with the fast JSON path off; print CPU ratios, check equal outputs",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="with --compare: a copy of the repository to run as 'old' (its src/ is imported), e.g. "
        "from `git archive HEAD src | tar -x -C DIR`; default: this code with NEGCLEAN_FAST_JSON=0",
    )
    ap.add_argument(
        "--baseline-fast",
        action="store_true",
        help="with --baseline: run the baseline with its fast JSON path on (old = that commit as it runs, not the "
        "code before the fast path)",
    )
    ap.add_argument("--flag-rate", type=float, default=0.1, help="fix step: share of candidates flagged (0.1)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--verdicts", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--src-fmt", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    ap.add_argument("--dst-fmt", help=argparse.SUPPRESS)
    ap.add_argument("--records", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--copy", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=1, help="run each step N times, keep the least CPU (default 1)")
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
        verdicts = work / "verdicts.jsonl"
        if "fix" in steps or "parquet_fix" in steps:
            flagged = generate_verdicts(verdicts, args.instances, args.flag_rate)
            print(f"verdicts: {flagged:,} of {args.instances * NEGATIVES:,} candidates flagged", file=sys.stderr)
        for step in steps:
            step_verdicts = None
            if step == "copy":
                dst, fmt, name, inp = work / f"copy{ext}", None, "copy (I/O floor, no parsing)", src
            elif step == "read":
                dst, fmt, name, inp = None, None, "read only (tevatron)", src
            elif step == "parquet_read":
                if not pq_path.exists():
                    run_step("(make parquet input)", src, pq_path, "parquet")
                dst, fmt, name, inp = work / f"back{ext}", "tevatron", "parquet -> tevatron", pq_path
            elif step == "parquet":
                dst, fmt, name, inp = pq_path, "parquet", "tevatron -> parquet", src
            elif step == "records":
                dst, fmt, name, inp = work / f"out_records{ext}", "tevatron", "tevatron -> tevatron (record loop)", src
            elif step == "fix":
                dst, fmt, name, inp = work / f"fixed{ext}", "tevatron", "fix relabel (tevatron)", src
                step_verdicts = verdicts
            elif step == "parquet_fix":
                if not pq_path.exists():
                    run_step("(make parquet input)", src, pq_path, "parquet")
                dst, fmt, name, inp = work / "fixed.parquet", "parquet", "fix relabel (parquet)", pq_path
                step_verdicts = verdicts
            else:
                dst, fmt, name, inp = work / f"out_{step}{ext}", step, f"tevatron -> {step}", src
            old_runs, new_runs = [], []
            flags = {"verdicts": step_verdicts, "records": step == "records", "copy": step == "copy"}
            for _ in range(max(1, args.repeat)):
                if args.compare and step != "copy":
                    fast = args.baseline_fast and args.baseline is not None
                    old_runs.append(
                        run_step(name + " [old]", inp, dst, fmt, fast=fast, baseline=args.baseline, **flags)
                    )
                new_runs.append(run_step(name, inp, dst, fmt, **flags))
            result = min(new_runs, key=lambda r: r["cpu_seconds"])
            result["cpu_runs"] = [r["cpu_seconds"] for r in new_runs]
            if old_runs:
                result["old"] = min(old_runs, key=lambda r: r["cpu_seconds"])
                result["old"]["cpu_runs"] = [r["cpu_seconds"] for r in old_runs]
            results.append(result)
            if dst is not None and not args.keep and dst != pq_path:
                dst.unlink()
    finally:
        if not args.keep:
            if args.workdir is None:
                shutil.rmtree(work, ignore_errors=True)
            else:
                for p in (src, pq_path, work / "verdicts.jsonl"):
                    p.unlink(missing_ok=True)
    load_after = os.getloadavg()

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\n{args.instances:,} instances (1 positive + {NEGATIVES} negatives, ~{WORDS} words each), "
        f"{'gzip' if args.gzip else 'plain'} JSON Lines; {machine}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; generating took {gen_s:.0f} s\n"
    )
    compare = " CPU s, old | CPU old / new | user old / new | same output |" if args.compare else ""
    print(
        "| step | instances/s (wall) | instances/s (CPU) | CPU us / instance | user + sys us | wall s | CPU s | "
        "input MB/s (wall) | peak RSS MB | output MB |" + compare
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|---|" if args.compare else ""))
    for r in results:
        out_mb = f"{r['output_bytes'] / 1e6:,.0f}" if "output_bytes" in r else "-"
        row = (
            f"| {r['step']} | {r['instances'] / r['seconds']:,.0f} | {r['instances'] / r['cpu_seconds']:,.0f} | "
            f"{r['cpu_seconds'] / r['instances'] * 1e6:,.1f} | "
            f"{r['user_seconds'] / r['instances'] * 1e6:,.1f} + {r['sys_seconds'] / r['instances'] * 1e6:,.1f} | "
            f"{r['seconds']:,.1f} | {r['cpu_seconds']:,.1f} | {r['input_bytes'] / 1e6 / r['seconds']:,.1f} | "
            f"{r['peak_rss_mb']:,.0f} | {out_mb} |"
        )
        if "old" in r:
            o = r["old"]
            same = "-" if "output_sha256" not in r else ("yes" if o["output_sha256"] == r["output_sha256"] else "NO")
            if same == "NO" and "content_sha256" in r and o.get("content_sha256") == r["content_sha256"]:
                same = "gunzipped"  # other gzip bytes (another compressor), the same lines
            row += (
                f" {o['cpu_seconds']:,.1f} | {o['cpu_seconds'] / r['cpu_seconds']:,.2f} | "
                f"{o['user_seconds'] / r['user_seconds']:,.2f} | {same} |"
            )
        elif args.compare:
            row += " - | - | - | - |"
        print(row)
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
