"""`negclean inspect`: one judged instance, readable."""

from __future__ import annotations

import json
from pathlib import Path

from negclean.cascade.outcome import outcome_from_row, outcome_row, read_verdict_rows
from negclean.data.io import read_instances
from negclean.errors import InputError


def _find(run_dir: Path, *, query_id: str | None, flagged: bool, index: int):
    summary_path = run_dir / "summary.json"
    verdicts_path = run_dir / "verdicts.jsonl"
    if not verdicts_path.exists() or not summary_path.exists():
        raise InputError("not a finished run folder (verdicts.jsonl and summary.json expected)", path=str(run_dir))
    summary = json.loads(summary_path.read_text())

    fmt = summary.get("read", {}).get("format")
    rows = read_verdict_rows(str(verdicts_path))
    for n, inst in enumerate(read_instances(summary["input"], fmt=fmt, on_error="skip")):
        row = next(rows)
        if (query_id is not None and inst.query_id == query_id) or (
            query_id is None and ((flagged and row["false_negatives"]) or (not flagged and n == index))
        ):
            return outcome_from_row(inst, row, path=str(verdicts_path))
    raise InputError("no matching instance (check --query / --index)", path=str(run_dir))


def inspect_run(run_dir: Path, *, query_id: str | None, flagged: bool, index: int, as_json: bool) -> None:
    outcome = _find(run_dir, query_id=query_id, flagged=flagged, index=index)
    inst = outcome.instance
    if as_json:
        row = outcome_row(outcome)
        row["query"] = inst.query
        row["positives"] = [{"docid": p.docid, "text": p.text} for p in inst.positives]
        for c, p in zip(row["candidates"], inst.negatives):
            c["text"] = p.text
        print(json.dumps(row, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.markup import escape  # texts and ids are data, not markup
    from rich.table import Table

    console = Console()
    console.print(f"[bold]query[/] {escape(inst.query_id)} (line {inst.line}): {escape(inst.query)}")
    for p in inst.positives:
        console.print(f"[green]positive[/] {escape(p.docid)}: {escape(p.text[:300])}")
    t = Table(show_lines=True)
    for col in ("#", "docid", "final", "stages", "text"):
        t.add_column(col)
    fns = set(outcome.false_negatives)
    for i, (p, c) in enumerate(zip(inst.negatives, outcome.candidates)):
        v = c.verdict
        final = (
            v.label.value
            + (f"/{v.grade.value}" if v.grade else "")
            + (f" p={v.confidence:.2f}" if v.confidence is not None else "")
        )
        if i in fns:
            final = f"[bold red]FALSE NEGATIVE[/] {final}"
        trail = "\n".join(
            f"{s}: {t.label.value}" + (f" ({escape(t.reason[:60])})" if t.reason else "") for s, t in c.trail
        )
        t.add_row(str(i + 1), escape(p.docid), final, trail, escape(p.text[:200]))
    console.print(t)
