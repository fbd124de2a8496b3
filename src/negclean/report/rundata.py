"""A finished run folder, opened for reading: its summary, its input joined with its verdicts, its store.

Shared by `negclean report` and `negclean annotate`. Nothing is loaded whole: ``outcomes()`` streams the
input file and ``verdicts.jsonl`` side by side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negclean.cascade.outcome import InstanceOutcome, outcome_from_row, read_verdict_rows
from negclean.data.io import read_instances
from negclean.errors import InputError

#: Extra result files other commands may leave in a run folder; the report renders them when present.
EXTRA_RESULTS = ("experiment.json", "bench_judges.json")


@dataclass(frozen=True)
class RunFolder:
    """Paths and summary of a run folder written by `negclean judge` / `negclean run`.

    Args:
        path: the folder.
        summary: the parsed ``summary.json``.
        input_path: the judged input file (resolved; may be overridden when the input has moved).
        store_path: the judgment store of the run (may not exist, e.g. after copying only the outputs).
    """

    path: Path
    summary: dict[str, Any]
    input_path: Path
    store_path: Path

    @property
    def verdicts_path(self) -> Path:
        return self.path / "verdicts.jsonl"

    @property
    def stage_names(self) -> list[str]:
        return [s["name"] for s in self.summary.get("cascade", {}).get("stages", [])]

    def outcomes(self) -> Iterator[InstanceOutcome]:
        """Every judged instance with its verdicts, in input order."""

        fmt = self.summary.get("read", {}).get("format")
        rows = read_verdict_rows(str(self.verdicts_path))
        for inst in read_instances(str(self.input_path), fmt=fmt, on_error="skip"):
            row = next(rows, None)
            if row is None:
                raise InputError(
                    f"verdicts.jsonl ends before input line {inst.line}: was the run stopped, or "
                    "is --input a different file than the one judged?",
                    path=str(self.verdicts_path),
                )
            yield outcome_from_row(inst, row, path=str(self.verdicts_path))
        if next(rows, None) is not None:
            raise InputError(
                f"verdicts.jsonl has more rows than {self.input_path} has readable instances: is "
                "--input the file that was judged?",
                path=str(self.verdicts_path),
            )

    def extra_results(self, also: Iterable[str | Path] = ()) -> dict[str, Any]:
        """Parsed ``experiment.json`` / ``bench_judges.json`` found in the folder, plus the JSON files ``also``
        names (which must exist), by file name."""
        found = {}
        extra = [Path(p) for p in also]
        for p in extra:
            if not p.is_file():
                raise InputError("no such result file (--extra takes JSON files)", path=str(p))
        for p in [self.path / name for name in EXTRA_RESULTS] + extra:
            if p.is_file() and p.name not in found:
                try:
                    found[p.name] = json.loads(p.read_text(encoding="utf-8"))
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"not valid JSON ({exc.msg} at line {exc.lineno}); fix or remove the file", path=str(p)
                    ) from None
        return found


def _locate(recorded: str | None, run_dir: Path, what: str, option: str) -> Path:
    """A path recorded in summary.json, tried as given, then relative to the run folder and its parent."""
    if not recorded:
        raise InputError(f"summary.json does not record the {what}; pass {option}", path=str(run_dir))
    p = Path(recorded).expanduser()
    candidates = [p] if p.is_absolute() else [p, run_dir / p, run_dir.parent / p, run_dir / p.name]
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def open_run(
    run_dir: str | Path,
    *,
    input_path: str | Path | None = None,
    store_path: str | Path | None = None,
    need_store: bool = False,
) -> RunFolder:
    """Open a finished run folder, checking that what the caller needs is there.

    Args:
        run_dir: folder with ``summary.json`` and ``verdicts.jsonl``.
        input_path: the judged file, when it is no longer where summary.json says.
        store_path: the judgment store, when not the one summary.json names.
        need_store: raise if the store file does not exist (the annotation app writes labels there).
    """
    run = Path(run_dir)
    summary_path = run / "summary.json"
    if not run.is_dir():
        raise InputError("no such run folder; give the folder `negclean judge -o` wrote", path=str(run))
    if not summary_path.is_file() or not (run / "verdicts.jsonl").is_file():
        raise InputError(
            "not a finished run folder: summary.json and verdicts.jsonl expected (a dry run or a "
            "run stopped by --max-cost writes no verdicts; rerun `negclean judge`)",
            path=str(run),
        )
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg}); rerun `negclean judge`", path=str(summary_path)) from None
    inp = Path(input_path) if input_path else _locate(summary.get("input"), run, "input file", "--input")
    if not inp.is_file():
        raise InputError(
            f"the judged input file {inp} is not there any more; pass --input PATH to the file that was judged",
            path=str(summary_path),
        )
    store = Path(store_path) if store_path else _locate(summary.get("store"), run, "judgment store", "--store")
    if need_store and not store.is_file():
        raise InputError(
            f"judgment store {store} not found; pass --store PATH (the file `negclean judge --store` "
            "used, judgments.sqlite in the run folder by default)",
            path=str(summary_path),
        )
    return RunFolder(run, summary, inp, store)
