"""Where `negclean compare` gets each system's per-query scores: evaluation folders or TREC run files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from negclean.data.qrels import read_qrels
from negclean.errors import ConfigError, InputError
from negclean.evaluate.measures import PerQuery, Qrels, per_query, read_trec_run


@dataclass(frozen=True, slots=True)
class System:
    """A named run with the qrels it is scored against."""

    name: str
    run_path: str
    qrels_path: str


def parse_system(spec: str, *, qrels: str | None = None) -> System:
    """``NAME=PATH`` or ``PATH``; PATH is an output folder of `negclean eval` or a TREC run file.

    A run file needs ``qrels``; an evaluation folder brings its own (``qrels`` overrides it).
    """
    name, sep, path_text = spec.partition("=")
    if not sep:
        name, path_text = "", spec
    path = Path(path_text)
    if path.is_dir():
        from negclean.evaluate.runner import RUN_FILE, load_result

        meta = load_result(path)
        run = path / RUN_FILE
        if not run.is_file():
            raise InputError(f"no {RUN_FILE} in this evaluation folder", path=str(path))
        return System(name or str(meta.get("name") or path.name), str(run), qrels or str(meta["qrels"]))
    if path.is_file():
        if qrels is None:
            raise ConfigError(f"{path}: a run file needs --qrels (or compare evaluation folders, which know theirs)")
        return System(name or path.stem, str(path), qrels)
    raise InputError("no such evaluation folder or run file", path=str(path))


def system_scores(systems: Sequence[System], *, measures: Sequence[str]) -> dict[str, PerQuery]:
    """Per-query scores of every system (each against its own qrels; they should be the same file)."""

    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ConfigError(f"system names must differ: {', '.join(names)} (write NAME=PATH)")
    qrels_cache: dict[str, Qrels] = {}
    out: dict[str, PerQuery] = {}
    for s in systems:
        if s.qrels_path not in qrels_cache:
            qrels_cache[s.qrels_path] = read_qrels(s.qrels_path)
        out[s.name] = per_query(read_trec_run(s.run_path), qrels_cache[s.qrels_path], measures)
    distinct = {repr(sorted((q, sorted(d.items())) for q, d in qrels.items())) for qrels in qrels_cache.values()}
    if len(distinct) > 1:
        raise ConfigError(
            "the systems were scored against different qrels ("
            + ", ".join(qrels_cache)
            + "): a comparison needs the same queries and judgments; give one --qrels"
        )
    return out


__all__ = ["System", "parse_system", "system_scores"]
