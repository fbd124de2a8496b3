"""Active sampling on TREC DL 2019: uncertainty vs random labeling at equal budgets (issue 9).

Queries are split once (by a hash of the query id) into a pool (70%) and a held-out test set (30%); from
the pool, each strategy labels ``--start`` random candidates, then ``--batch`` per round, with the
qrels as the oracle. Reported per round: labels used, held-out AUC on the test queries, the grouped-CV
AUC on the labels so far (the estimate the stopping rule watches), and where the stopping rule fired.

    python benchmarks/bench_learned_active.py --features runs/learned/dl19-features.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np


def features(path: Path):
    if path.is_file():
        d = np.load(path, allow_pickle=False)
        return d["values"], d["y"], d["groups"].astype(object)
    from negclean.benchjudges.dataset import from_beir
    from negclean.learned.features import compute_features

    bench = from_beir("../shared/data/trec-dl-2019-passage", max_candidates=25)
    table = compute_features(bench.instances)
    y = np.array([int(bench.truth[i]) for i in table.ids])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, values=table.values, y=y, groups=table.groups.astype(str))
    return table.values, y, table.groups


def main() -> None:
    from negclean.learned.active import StopRule, active_loop

    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, default=Path("runs/learned/dl19-features.npz"))
    ap.add_argument("--start", type=int, default=40)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    x, y, g = features(args.features)
    x = x[:, :-1]  # no 'prior' column here (no LLM verdicts over all of DL19)
    test_q = {q for q in set(g.tolist()) if hashlib.blake2b(q.encode(), digest_size=2).digest()[0] < 77}
    te = np.array([q in test_q for q in g])
    out = {}
    for strategy in ("uncertainty", "random"):
        runs = []
        for seed in range(args.seeds):
            hist, _, _ = active_loop(
                x[~te],
                g[~te],
                lambda idx: y[~te][idx],
                start=args.start,
                batch=args.batch,
                strategy=strategy,
                seed=seed,
                rule=StopRule(budget=args.budget, min_delta=-1, margin=0.5),
                test=(x[te], y[te]),
            )
            _, why, _ = active_loop(
                x[~te],
                g[~te],
                lambda idx: y[~te][idx],
                start=args.start,
                batch=args.batch,
                strategy=strategy,
                seed=seed,
                rule=StopRule(budget=args.budget),
            )
            runs.append(([(r.labeled, r.test_auc, r.cv_auc) for r in hist], why))
        out[strategy] = runs
    budgets = [r[0] for r in out["uncertainty"][0][0]]
    print(
        f"pool {int((~te).sum())} candidates ({len(set(g[~te].tolist()))} queries), test {int(te.sum())} "
        f"({len(test_q)} queries); mean over {args.seeds} seeds"
    )
    print("| labels | uncertainty: test AUC | random: test AUC | uncertainty: CV AUC estimate |")
    print("|---|---|---|---|")
    for i, b in enumerate(budgets):
        u = np.mean([r[0][i][1] for r in out["uncertainty"]])
        r_ = np.mean([r[0][i][1] for r in out["random"]])
        cv = [r[0][i][2] for r in out["uncertainty"] if r[0][i][2] is not None]
        print(f"| {b} | {u:.3f} | {r_:.3f} | {np.mean(cv) if cv else float('nan'):.3f} |")
    print(
        "stopping rule (patience 3, min gain 0.005), uncertainty: "
        + "; ".join(f"seed {s}: {why}" for s, (_, why) in enumerate(out["uncertainty"]))
    )
    Path("runs/learned").mkdir(parents=True, exist_ok=True)
    Path("runs/learned/active.json").write_text(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
