"""The screen vs the embedder alone on the same distinct texts, side by side in one process (issue 17, item 2).

1. Mine hard negatives with BM25 (no embedding, so nothing is in the embedding cache yet) from a BEIR set:
   ``--queries`` queries x ``--negatives`` negatives.
2. Embedder alone: the real MiniLM encodes every distinct text the screen will need (queries, positives, all
   negatives) in one ``Embedder.encode`` call: the physical limit, in candidates/s.
3. The screen (``negclean judge`` with a preset, ``screen`` by default, through ``pipeline.run_judge``) with an
   empty embedding cache, then again with a fresh judgment store over the same cache (the rerun).
4. The embedder alone once more (load on a shared machine drifts: the ratio uses the mean of the two).

Writes one JSON line of results to stdout (and to ``--out`` when given). Torch runs on one thread.

    .venv/bin/python benchmarks/bench_embed_cache.py --beir ../shared/data/cisi --queries 76 --negatives 30 \\
        --out /tmp/embed-cache.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def _distinct_texts(path: Path) -> list[str]:
    from negclean.data.io import read_instances

    texts: dict[str, None] = {}
    for inst in read_instances(str(path)):
        texts[inst.query] = None
        for p in (*inst.positives, *inst.negatives):
            texts[p.text] = None
    return list(texts)


def _embed_alone(texts: list[str]) -> float:
    from negclean.embed import load_embedder

    emb = load_embedder("all-MiniLM-L6-v2")
    t0 = time.perf_counter()
    emb.encode(texts, batch_size=64)
    return time.perf_counter() - t0


def _screen(data: Path, out: Path, cascade: str) -> tuple[float, dict]:
    from negclean.cascade.stages import CascadeConfig
    from negclean.pipeline import run_judge
    from negclean.presets import load_cascade_dict

    cfg = CascadeConfig.model_validate(load_cascade_dict(cascade))
    t0 = time.perf_counter()
    summary = run_judge(input_path=str(data), cascade=cfg, output_dir=out)
    return time.perf_counter() - t0, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", required=True, help="BEIR folder (e.g. ../shared/data/scifact)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--negatives", type=int, default=10)
    ap.add_argument("--cascade", default="screen", help="preset name or YAML file (default: screen)")
    ap.add_argument("--work", default=None, help="folder for the mined file, runs and cache (default: a temp dir)")
    ap.add_argument("--out", default=None, help="also write the JSON results here")
    args = ap.parse_args()

    import os

    import torch

    torch.set_num_threads(1)  # 2 shared cores: one thread, on both sides of the ratio
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-embed-cache-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["NEGCLEAN_EMBED_CACHE"] = str(work / "embed-cache")  # empty: the first run embeds everything

    from negclean.embed import load_embedder
    from negclean.mine.mine import mine

    data = work / "mined.jsonl"
    if not data.is_file():
        mine(
            beir=args.beir,
            split=args.split,
            output=str(data),
            retriever="bm25",
            rank_range=f"0:{args.negatives}",
            num_negatives=args.negatives,
            max_queries=args.queries,
            ratio=None,
            use_cache=False,
        )
    texts = _distinct_texts(data)
    load_embedder("all-MiniLM-L6-v2").encode(["warm up"] * 8)

    alone_before = _embed_alone(texts)
    first_s, first = _screen(data, work / "run1", args.cascade)
    rerun_s, rerun = _screen(data, work / "run2", args.cascade)
    alone_after = _embed_alone(texts)

    cands = first["cascade"]["candidates"]
    alone = (alone_before + alone_after) / 2
    res = {
        "data": f"{Path(args.beir).name}/{args.split}",
        "instances": first["cascade"]["instances"],
        "candidates": cands,
        "distinct_texts": len(texts),
        "cascade": args.cascade,
        "embedder_alone_s": [round(alone_before, 2), round(alone_after, 2)],
        "embedder_alone_cands_per_s": round(cands / alone, 2),
        "screen_first_s": round(first_s, 2),
        "screen_first_cands_per_s": round(cands / first_s, 2),
        "ratio_first": round(alone / first_s, 3),
        "screen_rerun_s": round(rerun_s, 2),
        "screen_rerun_cands_per_s": round(cands / rerun_s, 2),
        "first_embeddings": first["cascade"]["embeddings"],
        "rerun_embeddings": rerun["cascade"]["embeddings"],
        "stage_seconds_first": {s["name"]: s["seconds"] for s in first["cascade"]["stages"]},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads 1",
    }
    line = json.dumps(res)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
