"""The offline cascade's LLM stage on a label-free band around the screen's threshold (issue 15, items 2-3).

``band``: per data set, the learned screen fitted on the other two sets (features of bench_default_screen.py) gives
every candidate P(false negative); the band is the ``--share`` of the set's candidates nearest its threshold in
rank (label-free: the share sent is the routing goal's, <= 20%). Instances in the order of a hash of their query id
are taken until ``--per-set`` band candidates are reached; their band candidates go to the local LLM through the
real cascade with a judgment store (``routing.sqlite``: nothing is judged twice, a killed run resumes), round-robin
over the sets so a partial run covers all three. Rows go to ``band-llm.jsonl``.

``band-score``: held-out yes-rules for the band, each chosen on the other two sets' subsets and scored on the
third, on all candidates of its subset instances (screen outside the band, rule inside) against the screen alone;
bootstrap over instances for the kappa difference. Writes ``band-score.json``.

    nice -n 5 .venv/bin/python benchmarks/bench_routing.py band --cache /tmp/h3cache
    .venv/bin/python benchmarks/bench_routing.py band-score --cache /tmp/h3cache
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench_default_screen import OLD, SETS, build_instances, concat, load, table_of


@dataclass(frozen=True)
class Screen:
    """One held-out set under the screen fitted on the other two: P per candidate and the band."""

    p: np.ndarray
    y: np.ndarray
    inst: np.ndarray
    starts: np.ndarray
    qids: np.ndarray
    threshold: float
    lo: float
    hi: float

    def sent(self, p: np.ndarray) -> np.ndarray:
        return (p >= self.lo) & (p < self.hi)


def band_around(p: np.ndarray, threshold: float, *, share: float) -> tuple[float, float]:
    """[lo, hi): the ``share`` of ``p`` nearest ``threshold`` in rank, shifted inward at the ends."""
    q_t = float((p < threshold).mean())
    q_lo = min(max(q_t - share / 2, 0.0), 1.0 - share)
    lo = float(np.quantile(p, q_lo)) if q_lo > 0 else -np.inf
    hi = float(np.quantile(p, q_lo + share)) if q_lo + share < 1 else np.inf
    return lo, hi


def lodo_screens(cache: Path, *, share: float) -> dict[str, Screen]:
    from negclean.learned.fit import fit_learned

    data = load(cache)
    tables = {n: table_of(d, n) for n, d in data.items()}
    out = {}
    for held in SETS:
        train = [n for n in SETS if n != held]
        m = fit_learned(
            concat([tables[n] for n in train]), np.concatenate([data[n]["y"] for n in train]), features=OLD, folds=5
        ).model
        p = m.predict_proba(m.columns_from(tables[held].names, tables[held].values))
        inst = data[held]["inst"]
        lo, hi = band_around(p, m.threshold, share=share)
        out[held] = Screen(
            p,
            data[held]["y"].astype(bool),
            inst,
            np.searchsorted(inst, np.arange(inst.max() + 1)),
            data[held]["qids"],
            float(m.threshold),
            lo,
            hi,
        )
    return out


def _h(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def subset_instances(s: Screen, *, per_set: int) -> list[int]:
    """Instances in hash order of their query id until ``per_set`` band candidates are covered."""
    order = sorted(range(len(s.qids)), key=lambda i: _h(f"band|{s.qids[i]}"))
    chosen, n = [], 0
    for i in order:
        if n >= per_set:
            break
        chosen.append(i)
        n += int(s.sent(s.p[s.inst == i]).sum())
    return sorted(chosen)


def cmd_band(args) -> None:
    from negclean.cascade.runner import Cascade
    from negclean.cascade.stages import CascadeConfig
    from negclean.cascade.store import JudgmentStore
    from negclean.embed import load_embedder
    from negclean.judge.base import Label

    cache = Path(args.cache)
    screens = lodo_screens(cache, share=args.share)
    emb = load_embedder("all-MiniLM-L6-v2")
    llm = {"backend": "llamacpp", "mode": "pointwise", "n_threads": args.threads}  # n_threads: not in the key
    config = CascadeConfig.model_validate(
        {"stages": [{"name": "llm", "judge": llm, "escalate": "none"}], "max_false_negatives": None, "chunk_size": 1}
    )
    out = cache / "band-llm.jsonl"
    done = set()
    if out.is_file():
        done = {(r["set"], r["inst"]) for r in map(json.loads, out.read_text().splitlines()) if r}
    queue = {}
    for name, grade in SETS.items():
        s = screens[name]
        inst, _ = build_instances(Path(args.data) / name, relevant_grade=grade, depth=30, cache=cache, embedder=emb)
        assert [x.query_id for x in inst] == [str(q) for q in s.qids], f"{name}: instances differ from the features"
        todo = []
        for i in subset_instances(s, per_set=args.per_set):
            rows = np.arange(s.starts[i], s.starts[i] + len(inst[i].negatives))
            cands = [int(c) for c in np.flatnonzero(s.sent(s.p[rows]))]
            if cands and (name, i) not in done:
                todo.append((name, i, inst[i], cands, rows))
        queue[name] = todo
        print(name, "threshold", round(s.threshold, 3), "band", [s.lo, s.hi], "todo", len(todo), flush=True)
    longest = max(len(q) for q in queue.values())
    order = [q[k] for k in range(longest) for q in queue.values() if k < len(q)]
    with JudgmentStore(cache / "routing.sqlite") as store, Cascade(config, store=store) as cascade:
        for name, i, inst, cands, rows in order:
            t0 = time.perf_counter()
            cut = inst.replace(negatives=tuple(inst.negatives[c] for c in cands))
            (res,) = list(cascade.run([cut]))
            sec = time.perf_counter() - t0
            s = screens[name]
            with out.open("a") as fh:
                for c, cv in zip(cands, res.candidates):
                    row = {
                        "set": name,
                        "inst": i,
                        "cand": c,
                        "truth": bool(s.y[rows[c]]),
                        "p_screen": float(s.p[rows[c]]),
                        "llm": cv.verdict.label == Label.RELEVANT,
                        "p_yes": cv.verdict.confidence,
                        "seconds_instance": round(sec, 2),
                    }
                    fh.write(json.dumps(row) + "\n")
            print(name, i, len(cands), "candidates", round(sec, 1), "s", flush=True)


# ---- held-out yes-rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """All candidates of one set's complete subset instances: screen P, truth, band, P(yes) (NaN off the band)."""

    name: str
    p: np.ndarray
    y: np.ndarray
    inst: np.ndarray
    sent: np.ndarray
    p_yes: np.ndarray
    threshold: float
    hi: float


def scored_sets(args, screens: dict[str, Screen]) -> dict[str, Scored]:
    rows = [json.loads(x) for x in (Path(args.cache) / "band-llm.jsonl").read_text().splitlines() if x.strip()]
    p_yes = {(r["set"], r["inst"], r["cand"]): r["p_yes"] for r in rows}
    out = {}
    for name, s in screens.items():
        keep = []
        for i in subset_instances(s, per_set=args.per_set):
            idx = np.flatnonzero(s.inst == i)
            band = [int(c) for c in np.flatnonzero(s.sent(s.p[idx]))]
            if all((name, i, c) in p_yes for c in band):  # a killed run: only instances judged in full
                keep.append(i)
        m = np.isin(s.inst, keep)
        idx = np.flatnonzero(m)
        sent = s.sent(s.p[idx])
        py = np.full(len(idx), np.nan)
        for k in np.flatnonzero(sent):
            i = int(s.inst[idx[k]])
            py[k] = p_yes[(name, i, int(idx[k] - s.starts[i]))]
        assert not np.isnan(py[sent]).any(), f"{name}: a band candidate has no P(yes) (undecided verdict)"
        out[name] = Scored(name, s.p[idx], s.y[idx], s.inst[idx], sent, py, s.threshold, s.hi)
    return out


def metrics(y: np.ndarray, flag: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import cohen_kappa_score

    tp = int((flag & y).sum())
    return {
        "kappa": float(cohen_kappa_score(y, flag)),
        "precision": tp / int(flag.sum()) if flag.sum() else float("nan"),
        "recall": tp / max(int(y.sum()), 1),
        "flags_x": int(flag.sum()) / max(int(y.sum()), 1),
    }


def cascade_flags(d: Scored, band_flag: np.ndarray) -> np.ndarray:
    """Screen above the band flags, below clears; inside the band the rule decides."""
    return (d.p >= d.hi) | (d.sent & band_flag)


def best_cut(sets: list[Scored], score_of) -> float:
    """The cut on a band score (flag >= cut) with the highest kappa of the cascade on ``sets`` pooled."""
    from sklearn.metrics import cohen_kappa_score

    y = np.concatenate([d.y for d in sets])
    best = (-2.0, 0.5)
    for cut in np.round(np.arange(0.0, 1.0001, 0.01), 2):
        flag = np.concatenate([cascade_flags(d, d.sent & (np.nan_to_num(score_of(d)) >= cut)) for d in sets])
        k = float(cohen_kappa_score(y, flag))
        if k > best[0] + 1e-12:
            best = (k, float(cut))
    return best[1]


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-6, 1 - 1e-6)
    return np.log(x / (1 - x))


def stack_model(sets: list[Scored]):
    """Logistic regression on (logit screen P, logit P(yes)) over the band candidates of ``sets``."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([np.c_[_logit(d.p[d.sent]), _logit(d.p_yes[d.sent])] for d in sets])
    y = np.concatenate([d.y[d.sent] for d in sets])
    if len(set(y.tolist())) < 2:  # nothing to fit: the rule flags nothing in the band
        return (lambda d: np.zeros(len(d.p))), {"coef": None, "intercept": None}
    lr = LogisticRegression(C=1.0).fit(x, y)

    def score(d: Scored) -> np.ndarray:
        out = np.full(len(d.p), np.nan)
        if d.sent.any():
            out[d.sent] = lr.predict_proba(np.c_[_logit(d.p[d.sent]), _logit(d.p_yes[d.sent])])[:, 1]
        return out

    return score, {"coef": lr.coef_[0].round(3).tolist(), "intercept": round(float(lr.intercept_[0]), 3)}


def bootstrap_diff(ys, fa, fb, groups, *, reps: int = 2000, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over instances (within each set) of kappa(fa) - kappa(fb)."""
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(seed)
    by = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    sets = {}
    for rows in by:
        sets.setdefault(str(groups[rows[0]]).split("|")[0], []).append(rows)
    diffs = []
    for _ in range(reps):
        take = np.concatenate([np.concatenate([g[k] for k in rng.integers(0, len(g), len(g))]) for g in sets.values()])
        diffs.append(cohen_kappa_score(ys[take], fa[take]) - cohen_kappa_score(ys[take], fb[take]))
    d = np.asarray(diffs)
    d = d[~np.isnan(d)]  # a resample with one class has no kappa
    return {
        "diff": float(cohen_kappa_score(ys, fa) - cohen_kappa_score(ys, fb)),
        "ci95": [float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))] if len(d) else None,
        "p_le_0": float((d <= 0).mean()) if len(d) else None,
        "reps": len(d),
    }


def cmd_band_score(args) -> None:
    import warnings

    from sklearn.metrics import roc_auc_score

    warnings.filterwarnings("ignore", module="sklearn")  # kappa of one-class bootstrap resamples: NaN, dropped

    data = scored_sets(args, lodo_screens(Path(args.cache), share=args.share))
    result: dict = {"per_set": [], "pooled": {}}
    pooled: dict[str, list] = {"y": [], "g": [], "screen": [], "a": [], "b": [], "c": []}
    for held, d in data.items():
        train = [x for n, x in data.items() if n != held]
        tau = best_cut(train, lambda x: x.p_yes)
        stack, info = stack_model(train)
        cut_c = best_cut(train, stack)
        band_y, band_py = d.y[d.sent], d.p_yes[d.sent]
        flags = {
            "screen": d.p >= d.threshold,
            "a": cascade_flags(d, band_py_ge(d, 0.5)),
            "b": cascade_flags(d, band_py_ge(d, tau)),
            "c": cascade_flags(d, np.nan_to_num(stack(d)) >= cut_c),
        }
        g = np.asarray([f"{held}|{i}" for i in d.inst])
        row = {
            "held_out": held,
            "instances": int(len(np.unique(d.inst))),
            "candidates": int(len(d.y)),
            "true": int(d.y.sum()),
            "band": int(d.sent.sum()),
            "band_true": int(band_y.sum()),
            "sent": float(d.sent.mean()),
            "llm_auc_band": float(roc_auc_score(band_y, band_py)) if 0 < band_y.sum() < len(band_y) else None,
            "p_yes_relevant": np.quantile(band_py[band_y], [0.25, 0.5, 0.75]).round(3).tolist()
            if band_y.any()
            else None,
            "p_yes_not_relevant": np.quantile(band_py[~band_y], [0.25, 0.5, 0.75]).round(3).tolist(),
            "tau_b": tau,
            "stack_c": {**info, "cut": cut_c},
            "rules": {k: metrics(d.y, f) for k, f in flags.items()},
            "vs_screen": {k: bootstrap_diff(d.y, flags[k], flags["screen"], g) for k in ("a", "b", "c")},
        }
        result["per_set"].append(row)
        print(json.dumps(row), flush=True)
        pooled["y"].append(d.y)
        pooled["g"].append(g)
        for k, f in flags.items():
            pooled[k].append(f)
    y, g = np.concatenate(pooled["y"]), np.concatenate(pooled["g"])
    band_y = np.concatenate([d.y[d.sent] for d in data.values()])
    band_py = np.concatenate([d.p_yes[d.sent] for d in data.values()])
    result["pooled"]["llm_auc_band"] = float(roc_auc_score(band_y, band_py))
    result["pooled"]["band"], result["pooled"]["band_true"] = len(band_y), int(band_y.sum())
    for k in ("screen", "a", "b", "c"):
        result["pooled"][k] = metrics(y, np.concatenate(pooled[k]))
    for k in ("a", "b", "c"):
        result["pooled"][f"{k}_vs_screen"] = bootstrap_diff(
            y, np.concatenate(pooled[k]), np.concatenate(pooled["screen"]), g
        )
    print(json.dumps(result["pooled"]), flush=True)
    (Path(args.cache) / "band-score.json").write_text(json.dumps(result, indent=1))


def band_py_ge(d: Scored, cut: float) -> np.ndarray:
    return d.sent & (np.nan_to_num(d.p_yes) >= cut)
