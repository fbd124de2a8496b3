"""The systems `negclean holes` pools: TREC run files as given, and models evaluated on the split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from negclean.errors import ConfigError
from negclean.evaluate.measures import Run, read_trec_run
from negclean.evaluate.retrieval import BeirSplit
from negclean.evaluate.runner import evaluate, evaluate_first_stage


def _name_and_value(spec: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    return (name, value) if sep and name else ("", spec)


def collect_runs(
    data: BeirSplit,
    *,
    run_files: Sequence[str] = (),
    models: Sequence[str] = (),
    output_dir: str | Path,
    depth: int = 100,
) -> dict[str, Run]:
    """System name -> run, in the order given (run files first).

    Args:
        run_files: ``NAME=PATH`` or ``PATH`` (name: the file's stem) of TREC run files.
        models: ``NAME=MODEL`` or ``MODEL``: ``bm25``, or a bi-encoder / reranker (name or folder) evaluated on
            the split; its evaluation folder (run, per-query scores) goes to ``output_dir/systems/NAME``.
        depth: documents each model retrieves per query.
    """

    runs: dict[str, Run] = {}

    def add(name: str, run: Run, spec: str) -> None:
        if name in runs:
            raise ConfigError(f"two systems are named {name!r} (from {spec!r}): write NAME=PATH or NAME=MODEL")
        runs[name] = run

    for spec in run_files:
        name, path = _name_and_value(spec)
        add(name or Path(path).stem, read_trec_run(path), spec)
    for spec in models:
        name, model = _name_and_value(spec)
        name = name or Path(model).name
        folder = Path(output_dir) / "systems" / name
        if model == "bm25":
            result = evaluate_first_stage(first_stage="bm25", beir=data, output_dir=folder, depth=depth, name=name)
        else:
            result = evaluate(model=model, beir=data, output_dir=folder, depth=depth, name=name)
        assert result.run_path is not None  # an output folder was given
        add(name, read_trec_run(result.run_path), spec)
    if not runs:
        raise ConfigError("no systems: give --run FILE and/or --model MODEL (bm25, all-MiniLM-L6-v2, a folder)")
    return runs
