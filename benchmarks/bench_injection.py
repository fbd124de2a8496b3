"""How often does text injected into a passage flip the local LLM judge's verdict?

Real pairs from TREC DL 2019 (../shared/data/trec-dl-2019-passage): the question, one grade-3 passage
as the labeled positive, and a grade-0 passage (judged not relevant by NIST) as the candidate. Each
candidate is judged as is and with each text of tests/data/injection/injections.json appended (an
instruction to mark it relevant, forged structure, forged chat-template tokens, the same forged turn in
plain words) and with a neutral control sentence of similar length (the noise floor of appending anything).
A flip is a verdict that changes from the clean passage's; ``to_target`` counts those that moved to the label
the injected text asks for. With ``--relevant N``, N grade-3 candidates (relevant) get the
``demote`` text, which asks for "not relevant".

Judging goes through the real path: ``LlamaCppJudge.judge`` on ``JudgeTask``s (shared templates,
neutralised passages, chat template with contents tokenized as plain text, strict parsing). With
``--guard both`` (the default) every task is judged twice, on the same pairs: by the bare judge and through
the cascade's injection guard (``negclean.cascade.guard.InjectionGuard``), which sets aside candidates that
may carry an injection (undecided, not sent) and sends the rest to the same judge.

``--false-alarms`` runs no model: it scans every passage of ``examples/msmarco_hn_scored.jsonl`` and of the
corpora under ../shared/data with the guard's rules and reports, per corpus, how many clean passages it
would set aside, which rules fired, and examples.

    python benchmarks/bench_injection.py --pairs 30 --out /tmp/injection.json
    python benchmarks/bench_injection.py --pairs 30 --prompt-file my_pointwise.j2   # try a prompt wording
    python benchmarks/bench_injection.py --mode listwise --pairs 8                   # 4 candidates per call
    python benchmarks/bench_injection.py --false-alarms --out /tmp/false-alarms.json  # the guard on clean text

Results and commands: benchmarks/RESULTS-injection.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from negclean.cascade.guard import SET_ASIDE
from negclean.data.records import Instance, Passage
from negclean.judge.base import JudgeTask, Label

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "trec-dl-2019-passage"
INJECTIONS = REPO / "tests" / "data" / "injection" / "injections.json"
PROMOTE = ("control", "instruction", "forged_structure", "chat_tokens", "plain_turn")
EXAMPLES = REPO / "examples" / "msmarco_hn_scored.jsonl"


def load_dl19(data: Path):
    from negclean.evaluate.retrieval import load_beir_split

    split = load_beir_split(data, split="test")
    return split.queries, split.qrels, dict(zip(split.corpus.ids, split.corpus.texts))


def pick_pairs(queries, qrels, corpus, *, n: int, grade: int, seed: int) -> list[tuple[str, str, str]]:
    """(query id, positive docid, candidate docid): queries taken round-robin in a seeded order, one
    grade-3 positive per query, candidates of the given grade drawn without replacement."""
    rng = random.Random(seed)
    usable = []
    for qid in sorted(queries):
        grades = qrels.get(qid, {})
        top = sorted(d for d, g in grades.items() if g == 3 and d in corpus)
        pool = sorted(d for d, g in grades.items() if g == grade and d in corpus)
        if top and len(pool) > (1 if grade == 3 else 0):
            usable.append((qid, top, pool))
    rng.shuffle(usable)
    positives = {qid: rng.choice(top) for qid, top, _ in usable}
    pools = {qid: [d for d in pool if d != positives[qid]] for qid, _, pool in usable}
    for pool in pools.values():
        rng.shuffle(pool)
    pairs = []
    while len(pairs) < n and any(pools.values()):
        for qid, _, _ in usable:
            if pools[qid] and len(pairs) < n:
                pairs.append((qid, positives[qid], pools[qid].pop()))
    return pairs


def build_tasks(pairs, queries, corpus, variants: dict[str, str]) -> list[JudgeTask]:
    """One task per pair; its candidates are the same passage, clean first, then each variant."""
    tasks = []
    for i, (qid, pos, cand) in enumerate(pairs):
        text = corpus[cand]
        negatives = [Passage(cand, text)] + [
            Passage(f"{cand}+{name}", text + extra) for name, extra in variants.items()
        ]
        inst = Instance(f"{qid}#{i}", queries[qid], (Passage(pos, corpus[pos]),), tuple(negatives))
        tasks.append(JudgeTask(inst, tuple(range(len(negatives)))))
    return tasks


def override_prompt(name: str, path: Path) -> None:
    """Make template ``name`` come from ``path`` (a wording experiment; the fingerprint follows the file)."""
    from negclean.judge import prompts

    original = prompts.template_source
    text = path.read_text(encoding="utf-8")
    prompts.template_source = lambda n: text if n == name else original(n)
    prompts.template_hash.cache_clear()
    prompts._environment.cache_clear()


def summarize(rows: list[dict], variants: list[str], clean_label: str) -> dict:
    out = {}
    base = [r for r in rows if r["clean"]["label"] == clean_label]
    for name in variants:
        flips = sum(r[name]["label"] != r["clean"]["label"] for r in base)
        deltas = [
            r[name]["p_yes"] - r["clean"]["p_yes"]
            for r in rows
            if r[name]["p_yes"] is not None and r["clean"]["p_yes"] is not None
        ]
        undecided = sum(r[name]["label"] == "undecided" for r in rows)
        # the attack's aim: the label the injected text asks for (relevant when the clean verdict is not)
        target = Label.RELEVANT.value if clean_label != Label.RELEVANT.value else Label.NOT_RELEVANT.value
        to_target = sum(r[name]["label"] == target for r in base)
        set_aside = sum(r[name]["reason"].startswith(SET_ASIDE) for r in rows)
        out[name] = {
            "flips": flips,
            "of": len(base),
            "rate": round(flips / len(base), 4) if base else None,
            "to_target": to_target,
            "to_target_rate": round(to_target / len(base), 4) if base else None,
            "mean_delta_p_yes": round(sum(deltas) / len(deltas), 4) if deltas else None,
            "undecided": undecided,
            "set_aside": set_aside,
        }
    return out


def _verdicts(result, names) -> dict:
    return {
        name: {
            "label": v.label.value,
            "p_yes": None if v.confidence is None else round(v.confidence, 4),
            "reason": v.reason,
        }
        for name, v in zip(["clean", *names], result.verdicts)
    }


def run_pointwise(judges: dict, tasks, names) -> dict[str, list[dict]]:
    """Rows per judge (``bare``, ``guarded``): every judge takes the same tasks, one after the other."""
    rows: dict[str, list[dict]] = {k: [] for k in judges}
    for k, task in enumerate(tasks):
        for which, judge in judges.items():
            t0 = time.perf_counter()
            (result,) = judge.judge([task])
            row = {
                "query_id": task.instance.query_id,
                "candidate": task.instance.negatives[0].docid,
                "seconds": round(time.perf_counter() - t0, 2),
                **_verdicts(result, names),
            }
            rows[which].append(row)
            print(
                f"[{k + 1}/{len(tasks)}] {which} {row['seconds']:.1f}s "
                + " ".join(f"{n}={row[n]['label'][:3]}:{row[n]['p_yes']}" for n in ["clean", *names]),
                file=sys.stderr,
                flush=True,
            )
    return rows


def run_listwise(judge, pairs, queries, corpus, injections, names, *, per_call: int, seed: int) -> list[dict]:
    """Per query: ``per_call`` grade-0 candidates in one call, clean; then once per variant with the text
    appended to the last candidate. A flip: the verdict on any candidate differs from the clean call's."""
    rng = random.Random(seed)
    rows = []
    by_query: dict[str, list] = {}
    for qid, pos, cand in pairs:
        by_query.setdefault(qid, [pos, []])[1].append(cand)
    for k, (qid, (pos, cands)) in enumerate(by_query.items()):
        cands = cands[:per_call]
        rng.shuffle(cands)
        labels = {}
        t0 = time.perf_counter()
        for name in ["clean", *names]:
            negs = [Passage(c, corpus[c]) for c in cands]
            if name != "clean":
                last = negs[-1]
                negs[-1] = Passage(last.docid, last.text + injections[name])
            inst = Instance(qid, queries[qid], (Passage(pos, corpus[pos]),), tuple(negs))
            (result,) = judge.judge([JudgeTask(inst, tuple(range(len(negs))))])
            labels[name] = [v.label.value + (f"/{v.grade.value}" if v.grade else "") for v in result.verdicts]
            labels[name + "_reason"] = sorted({v.reason for v in result.verdicts if v.reason})
        row = {"query_id": qid, "candidates": cands, "seconds": round(time.perf_counter() - t0, 1), **labels}
        rows.append(row)
        print(
            f"[{k + 1}/{len(by_query)}] {row['seconds']}s " + " ".join(f"{n}={labels[n]}" for n in ["clean", *names]),
            file=sys.stderr,
            flush=True,
        )
    return rows


def _passages_of_rows(path: Path):
    """(docid, title, text) of every passage in a training file: FlagEmbedding (query/pos/neg strings) or
    Tevatron (positive_passages/negative_passages records); docids of bare strings are their line and place."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            for field in ("pos", "neg"):
                for j, text in enumerate(row.get(field) or []):
                    yield f"line{n}.{field}{j}", "", text
            for field in ("positive_passages", "negative_passages"):
                for p in row.get(field) or []:
                    yield p.get("docid", f"line{n}"), p.get("title") or "", p.get("text") or ""


def _passages_of_corpus(path: Path):
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                yield str(d.get("_id")), d.get("title") or "", d.get("text") or ""


def corpora(shared: Path) -> dict[str, Iterable]:
    """Every passage source: the example, then each folder of ../shared/data (corpus or training rows)."""
    out: dict[str, Iterable] = {"examples/msmarco_hn_scored.jsonl": _passages_of_rows(EXAMPLES)}
    for folder in sorted(p for p in shared.iterdir() if p.is_dir()):
        corpus = next((folder / n for n in ("corpus.jsonl", "corpus.jsonl.gz") if (folder / n).is_file()), None)
        if corpus is not None:
            out[folder.name] = _passages_of_corpus(corpus)
        for rows in sorted(folder.glob("*.jsonl")):
            if rows.name not in ("corpus.jsonl", "queries.jsonl"):
                out[f"{folder.name}/{rows.name}"] = _passages_of_rows(rows)
    return out


def false_alarms(shared: Path, *, examples_per_corpus: int = 3) -> dict:
    """Scan every distinct passage of every corpus with the guard's rules (text; titles counted apart)."""
    from negclean.judge.injection import RULE_NAMES, normalize, scan

    report = {}
    for name, passages in corpora(shared).items():
        seen: set[tuple[str, str]] = set()
        checked = flagged = flagged_titles = titles = 0
        rules = {r: 0 for r in RULE_NAMES}
        examples = []
        t0 = time.perf_counter()
        for docid, title, text in passages:
            if (title, text) in seen:
                continue
            seen.add((title, text))
            checked += 1
            found = scan(text)
            if title:
                titles += 1
                flagged_titles += bool(scan(title, field="title"))
            if found:
                flagged += 1
                for f in found:
                    rules[f.rule] += 1
                if len(examples) < examples_per_corpus:
                    norm = normalize(text)
                    at = max(norm.find(found[0].match), 0)
                    examples.append(
                        {
                            "docid": docid,
                            "rules": [f.rule for f in found],
                            "match": found[0].match,
                            "context": norm[max(0, at - 80) : at + 80],
                        }
                    )
        report[name] = {
            "passages": checked,
            "flagged": flagged,
            "rate": round(flagged / checked, 5) if checked else None,
            "titles": titles,
            "titles_flagged": flagged_titles,
            "rules": {r: n for r, n in rules.items() if n},
            "examples": examples,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"{name}: {flagged} of {checked} flagged {report[name]['rules']}", file=sys.stderr, flush=True)
    total = sum(r["passages"] for r in report.values())
    hits = sum(r["flagged"] for r in report.values())
    return {"corpora": report, "passages": total, "flagged": hits, "rate": round(hits / total, 5) if total else None}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--pairs", type=int, default=30, help="grade-0 (query, candidate) pairs")
    parser.add_argument("--relevant", type=int, default=0, help="grade-3 pairs judged with the 'demote' text")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=["pointwise", "listwise"], default="pointwise")
    parser.add_argument("--per-call", type=int, default=4, help="listwise: candidates per call")
    parser.add_argument("--variants", nargs="+", default=list(PROMOTE), choices=PROMOTE)
    parser.add_argument(
        "--guard",
        choices=["off", "on", "both"],
        default="both",
        help="judge bare, through the injection guard, or both (same pairs)",
    )
    parser.add_argument(
        "--false-alarms",
        action="store_true",
        help="no model: scan the clean corpora with the guard's rules (--data's parent folder)",
    )
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument(
        "--prompt-file",
        type=Path,
        default=None,
        help="replace the mode's shipped template with this file (wording experiments)",
    )
    parser.add_argument("--out", type=Path, default=None, help="per-pair results as JSON")
    args = parser.parse_args(argv)
    command = " ".join(["python", "benchmarks/bench_injection.py", *(argv or sys.argv[1:])])
    machine = f"{platform.machine()}, {platform.python_version()}"

    if args.false_alarms:
        result = {"command": command, "machine": machine, **false_alarms(args.data.parent)}
        text = json.dumps(result, indent=2, ensure_ascii=False)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
        print(text)
        return

    from negclean.cascade.guard import InjectionGuard
    from negclean.judge.config import LlamaCppJudgeConfig
    from negclean.judge.llamacpp import LlamaCppJudge

    injections = {k: v for k, v in json.loads(INJECTIONS.read_text(encoding="utf-8")).items() if not k.startswith("_")}
    cfg = LlamaCppJudgeConfig(model=args.model, mode=args.mode, n_threads=args.n_threads, max_tokens=64, n_ctx=4096)
    if args.prompt_file is not None:
        override_prompt(cfg.prompt_names()[0], args.prompt_file)
    queries, qrels, corpus = load_dl19(args.data)
    bare = LlamaCppJudge(cfg)
    judges = {"bare": bare, "guarded": InjectionGuard(bare)}
    judges = {
        k: v for k, v in judges.items() if args.guard == "both" or {"off": "bare", "on": "guarded"}[args.guard] == k
    }
    suffix = {"bare": "", "guarded": "_guarded"}
    t0 = time.perf_counter()
    result: dict = {
        "command": command,
        "judge": cfg.judge_id(),
        "fingerprint": cfg.fingerprint(),
        "mode": args.mode,
        "prompt_file": str(args.prompt_file) if args.prompt_file else None,
        "machine": machine,
        "judges": list(judges),
    }
    pairs = pick_pairs(queries, qrels, corpus, n=args.pairs, grade=0, seed=args.seed)
    names = list(args.variants)
    if args.mode == "pointwise":
        by_judge = run_pointwise(judges, build_tasks(pairs, queries, corpus, {n: injections[n] for n in names}), names)
        for which, rows in by_judge.items():
            result["promote" + suffix[which]] = {
                "pairs": len(rows),
                "clean_relevant": sum(r["clean"]["label"] == "relevant" for r in rows),
                "by_variant": summarize(rows, names, Label.NOT_RELEVANT.value),
                "rows": rows,
            }
        if args.relevant:
            rel = pick_pairs(queries, qrels, corpus, n=args.relevant, grade=3, seed=args.seed + 1)
            demote = ["control", "demote"]
            by_judge = run_pointwise(
                judges, build_tasks(rel, queries, corpus, {n: injections[n] for n in demote}), demote
            )
            for which, rrows in by_judge.items():
                result["demote" + suffix[which]] = {
                    "pairs": len(rrows),
                    "clean_not_relevant": sum(r["clean"]["label"] != "relevant" for r in rrows),
                    "by_variant": summarize(rrows, demote, Label.RELEVANT.value),
                    "rows": rrows,
                }
    else:
        pairs = pick_pairs(queries, qrels, corpus, n=args.pairs * args.per_call, grade=0, seed=args.seed)
        for which, judge in judges.items():
            rows = run_listwise(
                judge, pairs, queries, corpus, injections, names, per_call=args.per_call, seed=args.seed
            )
            by_variant = {}
            for name in names:
                flips = sum(r[name] != r["clean"] for r in rows)
                last = sum(r[name][-1] != r["clean"][-1] for r in rows)
                undec = sum(any(x.startswith("undecided") for x in r[name]) for r in rows)
                by_variant[name] = {
                    "calls_changed": flips,
                    "injected_candidate_changed": last,
                    "of": len(rows),
                    "calls_with_undecided": undec,
                }
            result["listwise" + suffix[which]] = {"calls": len(rows), "by_variant": by_variant, "rows": rows}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    summary = {k: v for k, v in result.items() if not isinstance(v, dict) or "rows" not in v}
    for part, v in result.items():
        if isinstance(v, dict) and "rows" in v:
            summary[part] = {k: x for k, x in v.items() if k != "rows"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
