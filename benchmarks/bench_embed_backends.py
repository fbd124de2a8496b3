"""fp32 MiniLM (sentence-transformers, torch) vs the int8 ONNX copy (``all-MiniLM-L6-v2-int8``), side by side.

Speed: passages/s of each backend at 1 and 2 threads on the same texts (SciFact abstracts, most cut at the
256-token limit, and SciFact queries as short texts), backends alternating, ``--rounds`` rounds, median kept.
Agreement, per BEIR set (default CISI and Cranfield, test split), every vector computed once per backend:
cosine of each document's int8 vector with its fp32 vector; dense mining (exact inner product) nDCG@10 and
recall@100 against the qrels; and the verdicts of two screens on sparse instances built as in
``bench_default_screen.py`` (one seeded-random relevant document per query as the positive, the top 30 fp32
candidates as negatives, so both backends judge the same pairs): the shipped learned screen at its own threshold
and the similarity judge at ratio 0.95. Nothing is fitted or chosen here.

    .venv/bin/python benchmarks/bench_embed_backends.py --out /tmp/embed-backends.json   # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEGCLEAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
RELEVANT_GRADE = {"cisi": 1, "cranfield": 2, "scifact": 1, "trec-dl-2019-passage": 2}
DEPTH = 30


class Precomputed:
    """An embedder that answers from vectors computed before (by exact text) and embeds only what is new.

    It has no ``identity``, so the judges use it as it is, without the on-disk embedding cache."""

    def __init__(self, inner: Any, texts: Sequence[str], vectors: np.ndarray):
        self.inner = inner
        self.rows = {t: i for i, t in enumerate(texts)}
        self.vectors = vectors
        self.embedded = 0

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def encode(
        self, texts: Sequence[str], *, prefix: str = "", batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing = [i for i, t in enumerate(texts) if prefix or t not in self.rows]
        known = [i for i, t in enumerate(texts) if not prefix and t in self.rows]
        out[known] = self.vectors[[self.rows[texts[i]] for i in known]]
        if missing:
            self.embedded += len(missing)
            out[missing] = self.inner.encode([texts[i] for i in missing], prefix=prefix, batch_size=batch_size)
        return out


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def backends(threads: int) -> dict[str, Any]:
    """The two embedders, each limited to ``threads`` threads."""
    from negclean.embed import Embedder, load_embedder
    from negclean.embed_onnx import ONNX_MINILM, load_onnx_minilm

    set_threads(threads)
    return {
        "fp32": load_embedder("all-MiniLM-L6-v2"),
        "int8": Embedder(load_onnx_minilm(threads=threads), name=ONNX_MINILM),
    }


def speed(texts: Sequence[str], *, rounds: int, label: str) -> list[dict[str, Any]]:
    rows = []
    for threads in (1, 2):
        models = backends(threads)
        for model in models.values():
            model.encode(texts[:8])  # warm-up: first-call allocations
        rates: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model.encode(texts, batch_size=32)
                rates[name].append(len(texts) / (time.perf_counter() - start))
        fp32, int8 = statistics.median(rates["fp32"]), statistics.median(rates["int8"])
        rows.append(
            {
                "texts": label,
                "n": len(texts),
                "threads": threads,
                "fp32_per_s": round(fp32, 2),
                "int8_per_s": round(int8, 2),
                "int8_over_fp32": round(int8 / fp32, 3),
                "rounds": {k: [round(r, 2) for r in v] for k, v in rates.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    set_threads(1)
    return rows


def scifact_texts(n: int) -> tuple[list[str], list[str]]:
    from negclean.mine.beir import read_corpus, read_queries

    corpus = read_corpus(SHARED / "scifact" / "corpus.jsonl.gz")
    queries = list(read_queries(SHARED / "scifact" / "queries.jsonl").values())
    return [corpus.indexed_text(i, include_title=True) for i in range(n)], queries[: 2 * n]


def mining(
    doc_vecs: np.ndarray, q_vecs: np.ndarray, qids: list[str], docids: list[str], qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    import ir_measures
    from ir_measures import R, nDCG

    run = []
    for row, qid in enumerate(qids):
        s = doc_vecs @ q_vecs[row]
        for i in np.argsort(-s)[:100]:
            run.append(ir_measures.ScoredDoc(qid, docids[i], float(s[i])))
    judged = [ir_measures.Qrel(q, d, int(g)) for q, docs in qrels.items() if q in set(qids) for d, g in docs.items()]
    agg = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], judged, run)
    return {"ndcg@10": round(float(agg[nDCG @ 10]), 4), "recall@100": round(float(agg[R @ 100]), 4)}


def screen_verdicts(instances: list[Any], embedders: dict[str, Any]) -> dict[str, Any]:
    """Per screen: flags of each backend and how often they agree, on the same (instance, candidate) pairs."""
    from negclean.judge.base import JudgeTask, Label
    from negclean.judge.config import LearnedJudgeConfig, SimilarityJudgeConfig
    from negclean.judge.learned import LearnedJudge
    from negclean.judge.similarity import SimilarityJudge

    tasks = [JudgeTask(inst, tuple(range(len(inst.negatives)))) for inst in instances]
    out: dict[str, Any] = {}
    for screen, make in (
        ("learned default screen", lambda e: LearnedJudge(LearnedJudgeConfig(), embedder=e)),
        ("similarity ratio 0.95", lambda e: SimilarityJudge(SimilarityJudgeConfig(ratio=0.95), embedder=e)),
    ):
        flags = {}
        for name, emb in embedders.items():
            results = make(emb).judge(tasks)
            flags[name] = np.array([v.label is Label.RELEVANT for r in results for v in r.verdicts])
        a, b = flags["fp32"], flags["int8"]
        po = float((a == b).mean())
        pe = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
        out[screen] = {
            "pairs": int(a.size),
            "flagged_fp32": int(a.sum()),
            "flagged_int8": int(b.sum()),
            "agreement": round(po, 4),
            "kappa": round((po - pe) / (1 - pe), 4) if pe < 1 else 1.0,
            "flipped": int((a != b).sum()),
        }
    return out


def agreement(name: str, *, threads: int) -> dict[str, Any]:
    from negclean.data.records import Instance, Passage
    from negclean.mine.beir import BeirFolder, read_corpus, read_queries

    folder = BeirFolder.locate(SHARED / name, split="test")
    qrels, queries, corpus = folder.read_qrels(), read_queries(folder.queries), read_corpus(folder.corpus)
    texts = [corpus.indexed_text(i, include_title=True) for i in range(len(corpus))]
    qids = [q for q in qrels if q in queries]
    models = backends(threads)
    docs, qv, seconds = {}, {}, {}
    for backend, model in models.items():
        start = time.perf_counter()
        docs[backend] = model.encode(texts, batch_size=32)
        qv[backend] = model.encode([queries[q] for q in qids], batch_size=32)
        seconds[backend] = round(time.perf_counter() - start, 1)
    cos = (docs["fp32"] * docs["int8"]).sum(axis=1)
    qcos = (qv["fp32"] * qv["int8"]).sum(axis=1)
    docids = list(corpus.ids)
    result: dict[str, Any] = {
        "set": name,
        "docs": len(texts),
        "queries": len(qids),
        "embed_seconds": seconds,
        "threads": threads,
        "doc_cosine": {
            "mean": round(float(cos.mean()), 5),
            "p1": round(float(np.percentile(cos, 1)), 5),
            "min": round(float(cos.min()), 5),
        },
        "query_cosine": {"mean": round(float(qcos.mean()), 5), "min": round(float(qcos.min()), 5)},
        "mining": {b: mining(docs[b], qv[b], qids, docids, qrels) for b in models},
    }
    top10 = []
    for row in range(len(qids)):
        tops = [set(np.argsort(-(docs[b] @ qv[b][row]))[:10].tolist()) for b in models]
        top10.append(len(tops[0] & tops[1]) / 10)
    result["mining"]["top10_overlap"] = round(float(np.mean(top10)), 4)
    # sparse instances: one seeded-random relevant document as the positive, the top DEPTH fp32 candidates
    grade = RELEVANT_GRADE.get(name, 1)
    instances = []
    for row, qid in enumerate(qids):
        rel = [d for d, g in qrels[qid].items() if g >= grade and corpus.position(d) is not None]
        if not rel:
            continue
        pos = sorted(rel, key=lambda d: hashlib.blake2b(f"0|{qid}|{d}".encode(), digest_size=8).digest())[0]
        pp = corpus.position(pos)
        s = docs["fp32"] @ qv["fp32"][row]
        cands = [int(i) for i in np.argsort(-s)[: DEPTH + 1] if i != pp][:DEPTH]
        negs = tuple(Passage(docids[i], texts[i], "", float(s[i]), r + 1) for r, i in enumerate(cands))
        instances.append(Instance(qid, queries[qid], (Passage(docids[pp], texts[pp], ""),), negs))
    wrapped = {
        b: Precomputed(models[b], texts + [queries[q] for q in qids], np.vstack([docs[b], qv[b]])) for b in models
    }
    result["screens"] = screen_verdicts(instances, wrapped)
    result["screens"]["instances"] = len(instances)
    result["screens"]["texts_embedded_again"] = {b: w.embedded for b, w in wrapped.items()}
    print(json.dumps(result), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--sets", default="cisi,cranfield", help="BEIR folders under the shared data (test split)")
    parser.add_argument("--speed-texts", type=int, default=128, help="SciFact abstracts timed (and 2x queries)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads for the agreement part")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (SHARED / "scifact").is_dir():
        print(f"shared data not found at {SHARED}: set NEGCLEAN_SHARED_DATA", file=sys.stderr)
        return 2
    import onnxruntime
    import torch

    long_texts, short_texts = scifact_texts(args.speed_texts)
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs visible, shared with other work; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}",
        "speed": speed(long_texts, rounds=args.rounds, label="SciFact abstracts (title + text)")
        + speed(short_texts, rounds=args.rounds, label="SciFact queries"),
        "agreement": [agreement(name, threads=args.threads) for name in args.sets.split(",") if name],
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
