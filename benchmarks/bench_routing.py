"""Routing to the strong stage, leave-one-data-set-out (issue 15, item 3).

1. ``judge``: the local Qwen 1.5B pointwise judge on a small deterministic subset (per data set 6 instances with the
   lowest hash of their query id, 4 random candidates of each, seeded by hash) through the real cascade with a
   judgment store, so a rerun judges nothing twice.
2. ``route``: for each held-out set, the learned screen fitted on the other two sets (its probabilities from the
   features of bench_default_screen.py), an uncertainty band [lo, hi] chosen on the other two sets' subsets (the
   narrowest share sent that keeps >= 95% of the strong stage's recall there), applied to the held-out subset:
   p >= hi flagged by the screen, p < lo cleared, the band decided by the LLM.

    .venv/bin/python benchmarks/bench_routing.py judge --cache /tmp/h3cache     # ~10-15 min on 2 cores
    .venv/bin/python benchmarks/bench_routing.py route --cache /tmp/h3cache

3. ``band`` / ``band-score``: the LLM on a label-free band around the held-out screen's threshold, and held-out
   yes-rules for it (``bench_routing_band.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_default_screen import OLD, SETS, build_instances, concat, load, table_of
from bench_routing_band import cmd_band, cmd_band_score

PER_SET, PER_INSTANCE = 6, 4
LLM = {"backend": "llamacpp", "mode": "pointwise", "n_threads": 2}


def _h(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def subset(instances, truth):
    """[(instance index, candidate index, truth)] of the deterministic subset."""
    order = sorted(range(len(instances)), key=lambda i: _h(f"route|{instances[i].query_id}"))[:PER_SET]
    out = []
    for i in sorted(order):
        cands = sorted(
            range(len(instances[i].negatives)),
            key=lambda c: _h(f"route|{instances[i].query_id}|{instances[i].negatives[c].docid}"),
        )
        out += [(i, c, bool(truth[i][c])) for c in sorted(cands[:PER_INSTANCE])]
    return out


def cmd_judge(args) -> None:
    """Instances round-robin over the sets, one at a time (chunk_size 1), each judged candidate's row appended to
    routing-llm.jsonl as soon as it is stored: on a shared machine a partial run still covers every set."""
    from negclean.cascade.runner import Cascade
    from negclean.cascade.stages import CascadeConfig
    from negclean.cascade.store import JudgmentStore
    from negclean.embed import load_embedder
    from negclean.judge.base import Label

    cache = Path(args.cache)
    emb = load_embedder("all-MiniLM-L6-v2")
    config = CascadeConfig.model_validate(
        {"stages": [{"name": "llm", "judge": LLM, "escalate": "none"}], "max_false_negatives": None, "chunk_size": 1}
    )
    queue = {}
    for name, grade in SETS.items():
        inst, truth = build_instances(Path(args.data) / name, relevant_grade=grade, depth=30, cache=cache, embedder=emb)
        chosen: dict[int, list[tuple[int, bool]]] = {}
        for i, c, t in subset(inst, truth):
            chosen.setdefault(i, []).append((c, t))
        queue[name] = [(name, i, inst[i], cs) for i, cs in chosen.items()]
    order = [x for group in zip(*queue.values()) for x in group]
    out = cache / "routing-llm.jsonl"
    out.write_text("")
    with JudgmentStore(cache / "routing.sqlite") as store, Cascade(config, store=store) as cascade:
        for name, i, inst, cs in order:
            # the instance cut to its chosen candidates: the pointwise LLM judges each candidate on its own
            cut = inst.replace(negatives=tuple(inst.negatives[c] for c, _ in cs))
            (res,) = list(cascade.run([cut]))
            with out.open("a") as fh:
                for (c, t), cv in zip(cs, res.candidates):
                    fh.write(
                        json.dumps(
                            {
                                "set": name,
                                "inst": i,
                                "cand": c,
                                "truth": t,
                                "llm": cv.verdict.label == Label.RELEVANT,
                                "p_yes": cv.verdict.confidence,
                            }
                        )
                        + "\n"
                    )
            print(name, i, "done", flush=True)


def cmd_route(args) -> None:
    from negclean.learned.fit import fit_learned

    cache = Path(args.cache)
    data = load(cache)
    tables = {n: table_of(d, n) for n, d in data.items()}
    rows = [json.loads(line) for line in (cache / "routing-llm.jsonl").read_text().splitlines() if line.strip()]
    p_of = {}
    for held in SETS:  # the screen that routes the held-out set was fitted on the other two
        train = [n for n in SETS if n != held]
        m = fit_learned(
            concat([tables[n] for n in train]), np.concatenate([data[n]["y"] for n in train]), features=OLD, folds=5
        ).model
        p = m.predict_proba(m.columns_from(tables[held].names, tables[held].values))
        starts = np.searchsorted(data[held]["inst"], np.arange(data[held]["inst"].max() + 1))
        for r in rows:
            if r["set"] == held:
                p_of[(held, r["inst"], r["cand"])] = float(p[starts[r["inst"]] + r["cand"]])
        # the band is chosen with the screen the held-out set will use, on the training sets' subsets
    for r in rows:
        r["p_screen"] = p_of[(r["set"], r["inst"], r["cand"])]

    def evaluate(rs, lo, hi):
        y = np.array([r["truth"] for r in rs])
        p = np.array([r["p_screen"] for r in rs])
        llm = np.array([r["llm"] for r in rs])
        sent = (p >= lo) & (p < hi)
        flag = (p >= hi) | (sent & llm)
        rec_llm = (llm & y).sum() / max(y.sum(), 1)
        rec = (flag & y).sum() / max(y.sum(), 1)
        from sklearn.metrics import cohen_kappa_score

        return {
            "n": len(rs),
            "true": int(y.sum()),
            "sent": float(sent.mean()),
            "recall": float(rec),
            "llm_recall": float(rec_llm),
            "kept": float(rec / rec_llm) if rec_llm else float("nan"),
            "precision": float((flag & y).sum() / flag.sum()) if flag.sum() else float("nan"),
            "llm_precision": float((llm & y).sum() / llm.sum()) if llm.sum() else float("nan"),
            "kappa": float(cohen_kappa_score(y, flag)),
            "llm_kappa": float(cohen_kappa_score(y, llm)),
            "flags_x": float(flag.sum() / max(y.sum(), 1)),
        }

    grid = np.round(np.arange(0.0, 1.0001, 0.02), 2)

    def choose(rs):
        """The band sending the fewest candidates that keeps >= 95% of the LLM's recall at <= 2x flags on ``rs``."""
        best = None
        for lo in grid:
            for hi in grid[grid >= lo]:
                e = evaluate(rs, lo, hi)
                if e["kept"] >= 0.95 and e["flags_x"] <= 2.0 and (best is None or e["sent"] < best[0]["sent"]):
                    best = (e, float(lo), float(hi))
        return best

    out = []
    for held in SETS:
        tr = [r for r in rows if r["set"] != held]
        te = [r for r in rows if r["set"] == held]
        best = choose(tr)
        if best is None:
            out.append({"held_out": held, "band": None})
            continue
        e, lo, hi = best
        res = {
            "held_out": held,
            "band": [lo, hi],
            "train": e,
            "test": evaluate(te, lo, hi),
            "llm_all": evaluate(te, 0.0, 1.01),
        }
        out.append(res)
        print(json.dumps(res), flush=True)
    # the band to ship: the packaged screen (fitted on all three sets) on every subset row (in-sample: no set
    # is left to test it on; the held-out rows above are the estimate of what it reaches)
    from negclean.learned.model import LearnedModel

    m = LearnedModel.load("default")
    shipped = []
    for name in SETS:
        p = m.predict_proba(m.columns_from(tables[name].names, tables[name].values))
        starts = np.searchsorted(data[name]["inst"], np.arange(data[name]["inst"].max() + 1))
        shipped += [{**r, "p_screen": float(p[starts[r["inst"]] + r["cand"]])} for r in rows if r["set"] == name]
    best = choose(shipped)
    ship = {"band": None if best is None else [best[1], best[2]], "in_sample": None if best is None else best[0]}
    if best is not None:
        ship["sent_on_full_sets"] = {}
        for name in SETS:
            p = m.predict_proba(m.columns_from(tables[name].names, tables[name].values))
            ship["sent_on_full_sets"][name] = float(((p >= best[1]) & (p < best[2])).mean())
    out.append({"shipped": ship})
    print(json.dumps(ship), flush=True)
    (cache / "routing.json").write_text(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["judge", "route", "band", "band-score"])
    ap.add_argument("--cache", default="runs/default-screen")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--share", type=float, default=0.20, help="band: share of each set's candidates sent (label-free)")
    ap.add_argument("--per-set", type=int, default=150, help="band: band candidates judged per set (at most)")
    ap.add_argument("--threads", type=int, default=1, help="band: the LLM's n_threads")
    args = ap.parse_args()
    {"judge": cmd_judge, "route": cmd_route, "band": cmd_band, "band-score": cmd_band_score}[args.cmd](args)


if __name__ == "__main__":
    main()
