"""Throughput of the local GGUF judge (llamacpp backend) on real TREC DL 2019 pairs.

For each of ``--queries`` DL19 queries (ids in sorted order, those with a grade-3 passage): the first
grade-3 passage is the labeled positive and ``--candidates`` other judged passages (a seeded sample)
are the candidates. Three runs through ``LlamaCppJudge.judge``:

- pointwise with prefix reuse (the default): the prefix batch (instructions, question, positive) is
  evaluated once per query, then only each candidate's part;
- pointwise without prefix reuse: every prompt evaluated in full (same split, same computation);
- listwise brief (verdict line only, no reasoning): one call per query with all its candidates.

Reported per run: judged candidates per second, prompt tokens per candidate (whole prompts and
actually evaluated), output tokens per candidate, seconds; for pointwise also whether the two runs
gave bit-identical P(yes), and (for orientation only) AUC of P(yes) against NIST grades >= 2.

    python benchmarks/bench_local_judge.py --queries 10 --candidates 8 --threads 2 --out /tmp/local_judge.json

``--modes alignment`` instead checks, per query, which cached-prefix lengths give logits bit-identical
to a one-batch evaluation (the reason the judge splits prompts by content; see ``alignment_probe``):

    python benchmarks/bench_local_judge.py --modes alignment --queries 4 --candidates 1 \
        --model qwen2.5-coder-0.5b-instruct-q4_k_m --max-suffix 40

Results and commands: benchmarks/RESULTS-local-judge.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

from negclean.data.records import Instance, Passage
from negclean.judge.base import JudgeTask, Label

REPO = Path(__file__).resolve().parents[1]


def shared_dl19() -> Path:
    root = os.environ.get("NEGCLEAN_SHARED_DATA")
    return (Path(root) if root else REPO.parent / "shared" / "data") / "trec-dl-2019-passage"


def load_tasks(data: Path, *, queries: int, candidates: int, seed: int) -> tuple[list[JudgeTask], list[list[int]]]:
    """Tasks and the NIST grade of every candidate (see the module docstring)."""
    from negclean.evaluate.retrieval import load_beir_split

    split = load_beir_split(data, split="test")
    texts_q, grades = split.queries, split.qrels
    rng = random.Random(seed)
    chosen = []
    for qid in sorted(grades):
        top = sorted(d for d, g in grades[qid].items() if g == 3)
        if not top:
            continue
        others = sorted(d for d in grades[qid] if d != top[0])
        chosen.append((qid, top[0], rng.sample(others, min(candidates, len(others)))))
        if len(chosen) == queries:
            break
    corpus = dict(zip(split.corpus.ids, split.corpus.texts))
    tasks, labels = [], []
    for qid, pos, cands in chosen:
        inst = Instance(qid, texts_q[qid], (Passage(pos, corpus[pos]),), tuple(Passage(d, corpus[d]) for d in cands))
        tasks.append(JudgeTask(inst, tuple(range(len(cands)))))
        labels.append([grades[qid][d] for d in cands])
    return tasks, labels


def auc(scores: list[float], positive: list[bool]) -> float | None:
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def run(judge, tasks) -> tuple[list, dict]:
    before = judge.stats.as_dict()
    start = time.perf_counter()
    results = judge.judge(tasks)
    wall = time.perf_counter() - start
    after = judge.stats.as_dict()
    delta = {k: after[k] - before[k] for k in after if k != "load_seconds"}
    n = sum(len(t.candidates) for t in tasks)
    undecided = sum(v.label is Label.UNDECIDED for r in results for v in r.verdicts)
    summary = {
        "candidates": n,
        "seconds": round(wall, 2),
        "candidates_per_s": round(n / wall, 3),
        "calls": delta["calls"],
        "prompt_tokens_per_candidate": round(delta["tokens_in"] / n, 1),
        "evaluated_tokens_per_candidate": round(delta["tokens_evaluated"] / n, 1),
        "output_tokens_per_candidate": round(delta["tokens_out"] / n, 2),
        "prefix_hits": delta["prefix_hits"],
        "undecided": undecided,
    }
    return results, summary


def alignment_probe(judge, tasks, *, max_suffix: int) -> list[dict]:  # judge: a LlamaCppEngine
    """Why the judge splits prompts by content instead of reusing any common prefix.

    For each task's first candidate prompt of length N: evaluate it in one batch (reference logits),
    then, for every suffix length s in 1..max_suffix, keep the first N - s tokens in the KV cache and
    evaluate only the last s; mark whether the last position's logits are bit-identical. Kept
    prefixes that are multiples of 4 are what MODELS.md recommended.
    """
    import numpy as np

    from negclean.judge.listwise import chunk_calls

    llm, lib = judge._llm, judge._lib
    rows = []
    for task in tasks:
        call = chunk_calls([task], template="pointwise", max_candidates=1, include_titles=False)[0]
        tokens = judge.encode_messages(call.messages)
        n = len(tokens)

        def last_logits():
            return np.ctypeslib.as_array(lib.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()

        llm.n_tokens = 0
        llm.eval(tokens)
        reference = last_logits()
        same = {}
        for s in range(1, min(max_suffix, n - 1) + 1):  # shrinking suffixes leave the prefix untouched
            llm.n_tokens = n - s
            llm.eval(tokens[n - s :])
            same[s] = bool(np.array_equal(last_logits(), reference))
        aligned = [s for s in same if (n - s) % 4 == 0]
        rows.append(
            {
                "prompt_tokens": n,
                "identical": "".join("." if same[s] else "x" for s in sorted(same)),
                "aligned_suffixes_identical": sum(same[s] for s in aligned),
                "aligned_suffixes": len(aligned),
            }
        )
        print("alignment", json.dumps(rows[-1]), flush=True)
    judge.clear_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--modes",
        default="cached,uncached,listwise",
        help="comma-separated subset of cached, uncached, listwise, alignment",
    )
    parser.add_argument("--max-suffix", type=int, default=40, help="alignment: longest suffix tried")
    parser.add_argument("--listwise-max-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    from negclean.judge.config import LlamaCppJudgeConfig
    from negclean.judge.llamacpp import LlamaCppJudge

    data = shared_dl19()
    if not data.is_dir():
        print(f"TREC DL 2019 not found at {data} (set NEGCLEAN_SHARED_DATA)", file=sys.stderr)
        return 2
    tasks, grades = load_tasks(data, queries=args.queries, candidates=args.candidates, seed=args.seed)
    relevant = [g >= 2 for gs in grades for g in gs]
    modes = args.modes.split(",")
    import llama_cpp

    report: dict = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "llama_cpp_python": llama_cpp.__version__,
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "data": {"queries": len(tasks), "candidates": len(relevant), "relevant_grade_ge_2": sum(relevant)},
        "model": args.model,
        "runs": {},
    }
    p_yes: dict[str, list[float]] = {}
    if {"cached", "uncached"} & set(modes):
        judge = LlamaCppJudge(LlamaCppJudgeConfig(model=args.model, n_threads=args.threads))
        report["load_seconds"] = round(judge.stats.load_seconds, 2)
        for mode in ("cached", "uncached"):
            if mode not in modes:
                continue
            judge.prefix_cache = mode == "cached"
            judge.clear_cache()  # each run starts with an empty cache
            results, summary = run(judge, tasks)
            p_yes[mode] = [
                v.confidence if v.confidence is not None else float("nan") for r in results for v in r.verdicts
            ]
            summary["auc_vs_grade_ge_2"] = auc(p_yes[mode], relevant)
            report["runs"][f"pointwise_{mode}"] = summary
            print(mode, json.dumps(summary), flush=True)
        judge.close()
        if len(p_yes) == 2:
            diffs = [abs(a - b) for a, b in zip(p_yes["cached"], p_yes["uncached"])]
            report["pointwise_max_abs_diff_cached_vs_uncached"] = max(diffs)
            c, u = report["runs"]["pointwise_cached"], report["runs"]["pointwise_uncached"]
            report["pointwise_speedup_cached_over_uncached"] = round(c["candidates_per_s"] / u["candidates_per_s"], 2)
    if "alignment" in modes:  # needs the model itself: the engine in this process, not the judge's child
        from negclean.judge.gguf_models import resolve_model
        from negclean.judge.llamacpp_engine import LlamaCppEngine

        cfg = LlamaCppJudgeConfig(model=args.model, n_threads=args.threads)
        engine = LlamaCppEngine(cfg, model_path=str(resolve_model(cfg.model, cache_dir=cfg.cache_dir)))
        report["alignment"] = alignment_probe(engine, tasks, max_suffix=args.max_suffix)
        engine.close()
    if "listwise" in modes:
        cfg = LlamaCppJudgeConfig(
            model=args.model,
            mode="listwise",
            reasoning=False,
            n_threads=args.threads,
            max_candidates=args.candidates,
            max_tokens=args.listwise_max_tokens,
        )
        judge = LlamaCppJudge(cfg)
        results, summary = run(judge, tasks)
        flagged = [v.label is Label.RELEVANT for r in results for v in r.verdicts]
        decided = [
            (f, rel)
            for f, rel, v in zip(flagged, relevant, (v for r in results for v in r.verdicts))
            if v.label is not Label.UNDECIDED
        ]
        summary["agreement_with_grade_ge_2"] = (
            round(sum(f == rel for f, rel in decided) / len(decided), 3) if decided else None
        )
        summary["undecided_reasons"] = sorted({v.reason for r in results for v in r.verdicts if v.reason})[:5]
        report["runs"]["listwise_brief"] = summary
        print("listwise", json.dumps(summary), flush=True)
        judge.close()
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
