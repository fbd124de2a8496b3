"""The Python API: ``negclean.judge``, ``fix``, ``mine``, ``evaluate``, ``read`` and ``write``.

    from sentence_transformers.util import mine_hard_negatives
    import negclean

    mined = mine_hard_negatives(pairs, model, num_negatives=5, output_format="n-tuple")
    verdicts = negclean.judge(mined, "screen")
    fixed = negclean.fix(mined, verdicts, op="relabel")       # a Dataset with the same columns

``data`` is a path (any supported file), a list of ``Instance``, a list of row dicts, a ``datasets.Dataset`` or a
pandas DataFrame (``negclean.data.tables`` lists the column layouts: Tevatron, FlagEmbedding, and the n-tuple,
triplet and labeled-list layouts of sentence-transformers' ``mine_hard_negatives``). Everything runs in memory;
files are written only where an argument names one (``store``, ``output``). For files too big for memory,
``judge_file``, ``fix_file`` and ``run`` (``negclean.api_files``) stream them at flat memory.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, overload

from negclean.api_files import Operation, convert_file, fix_file, judge_file, run
from negclean.api_records import ConvertReport, Fixed, FixReport, JudgeResult, MineResult, RunSummary, SourceKind
from negclean.cascade.funnel import StageFunnel
from negclean.cascade.outcome import InstanceOutcome, outcome_from_row, read_verdict_rows
from negclean.cascade.runner import Cascade
from negclean.cascade.stages import CascadeConfig
from negclean.cascade.store import JudgmentStore
from negclean.data.io import open_writer, read_instances, require_instances
from negclean.data.records import Instance, Rejected
from negclean.data.tables import Ragged, TableLayout, build_table, container_of, instance_rows, read_table
from negclean.errors import ConfigError, InputError
from negclean.evaluate.measures import DEFAULT_MEASURES
from negclean.evaluate.runner import evaluate as run_evaluation
from negclean.fix.operations import FixCounts, fix_instance
from negclean.fix.operations import Operation as Op
from negclean.mine.config import MineConfig
from negclean.mine.mine import beir_source, instance_source, mine_queries
from negclean.mine.retrievers import build_retriever
from negclean.mine.summary import MineStats
from negclean.pipeline import load_cascade

if TYPE_CHECKING:
    import datasets
    import pandas

    from negclean.evaluate.runner import EvalResult
    from negclean.judge.base import Judge

__all__ = [
    "ConvertReport",
    "Fixed",
    "FixReport",
    "JudgeResult",
    "MineResult",
    "RunSummary",
    "StageFunnel",
    "convert_file",
    "evaluate",
    "fix",
    "fix_file",
    "judge",
    "judge_file",
    "mine",
    "read",
    "run",
    "write",
]

PathLike = Union[str, "os.PathLike[str]"]
Data = Union[PathLike, Iterable[Instance], Iterable[Mapping[str, Any]], "datasets.Dataset", "pandas.DataFrame"]
D = TypeVar("D")
AS_JUDGED = "as_judged"


class _Loaded:
    """Data read into instances, with what is needed to give a fixed copy back in the same kind."""

    def __init__(
        self,
        kind: SourceKind,
        instances: Sequence[Instance],
        *,
        records: int,
        rejected: int = 0,
        rejects: tuple[Rejected, ...] = (),
        layout: TableLayout | None = None,
        rows_per_instance: Sequence[int] | None = None,
        fmt: str | None = None,
    ):
        self.kind = kind
        self.instances = tuple(instances)
        self.records = records
        self.rejected = rejected
        self.rejects = rejects
        self.layout = layout
        self.rows_per_instance = tuple(rows_per_instance or [1] * len(self.instances))
        self.fmt = fmt


def _load(data: Any, *, fmt: str | None, on_error: Literal["fail", "skip"]) -> _Loaded:
    if isinstance(data, (str, os.PathLike)):
        reader = read_instances(data, fmt=fmt, on_error=on_error)
        instances = list(reader)
        require_instances(reader.stats)
        stats = reader.stats
        return _Loaded("path", instances, records=stats.read, rejected=stats.rejected, fmt=stats.format)
    container = container_of(data)
    if container is None:
        if isinstance(data, Mapping) or not isinstance(data, Iterable):
            raise ConfigError(
                f"data must be a path, a list of Instance or of row dicts, a datasets.Dataset or a "
                f"pandas DataFrame, not {type(data).__name__}"
            )
        items = list(data)
        if not items:
            raise InputError("no records: the data is empty, nothing to judge or fix", path="<data>")
        if all(isinstance(i, Instance) for i in items):
            return _Loaded("instances", items, records=len(items))
        bad = next(i for i, x in enumerate(items) if not isinstance(x, (Instance, Mapping)))
        if any(not isinstance(x, Mapping) for x in items):
            raise ConfigError(
                f"record {bad + 1} of the data is a {type(items[bad]).__name__}; give a list of "
                "Instance or a list of dicts, not a mix or other objects"
            )
        data, container = items, "rows"
    table = read_table(data, on_error=on_error)
    return _Loaded(
        container,
        table.instances,
        records=table.records,
        rejected=len(table.rejected),
        rejects=table.rejected,
        layout=table.layout,
        rows_per_instance=table.rows_per_instance,
    )


class _Progress:
    """``judged N/M instances`` on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        self.done += n
        end = "\r" if self.tty and self.done < self.total else "\n"
        if self.tty or self.done >= self.total:
            print(f"negclean: judged {self.done}/{self.total} instances", end=end, file=sys.stderr, flush=True)


def judge(
    data: Data,
    cascade: str | PathLike | CascadeConfig | Mapping[str, Any] = "offline",
    *,
    store: PathLike | JudgmentStore | None = None,
    max_cost: float | None = None,
    progress: bool = True,
    fmt: str | None = None,
    on_error: Literal["fail", "skip"] = "fail",
    judges: Mapping[str, Judge] | None = None,
) -> JudgeResult:
    """Judge every hard negative of ``data`` through a cascade of judges.

    Args:
        data: a training file, a list of ``Instance`` or row dicts, a ``datasets.Dataset`` or a pandas DataFrame.
        cascade: a preset name (``offline``, ``screen``, ``rlhn``, ``rlhn-screened``), a cascade YAML file, a
            ``CascadeConfig`` or its mapping.
        store: the judgment store: a SQLite file (verdicts already there are reused and never paid again), an
            open ``JudgmentStore``, or None for one in memory, gone after the call.
        max_cost: USD cap for this call (overrides the cascade's ``max_cost``); ``BudgetExceeded`` stops the
            run cleanly, and with a store file everything judged so far is kept for a rerun.
        progress: print the count of judged instances to stderr.
        fmt: the format of a file (default: detected).
        on_error: ``fail`` raises ``InputError`` at the first unreadable record; ``skip`` sets it aside (counted
            in ``rejected``).
        judges: prebuilt judges by stage name, used instead of building them from the cascade.

    Returns:
        A ``JudgeResult``: verdicts per instance, the per-stage funnel, cost; ``.to_pandas()`` per candidate.
    """
    t0 = time.perf_counter()
    config = load_cascade(cascade)
    if max_cost is not None:
        if max_cost < 0:
            raise ConfigError(f"max_cost must be >= 0 (USD), not {max_cost}")
        config = config.model_copy(update={"max_cost": float(max_cost)})
    loaded = _load(data, fmt=fmt, on_error=on_error)
    if isinstance(store, JudgmentStore):
        db, own = store, False
    else:
        db, own = JudgmentStore(":memory:" if store is None else os.fspath(store)), True
    try:
        on_progress = _Progress(len(loaded.instances)) if progress else None
        with Cascade(config, store=db, judges=dict(judges or {}), on_progress=on_progress) as runner:
            outcomes = tuple(runner.run(loaded.instances))
        stats = runner.stats
    finally:
        if own:
            db.close()
    summary = stats.as_dict()
    funnel = tuple(StageFunnel.of(s) for s in stats.stages)
    return JudgeResult(
        verdicts=outcomes,
        funnel=funnel,
        summary=summary,
        cost=stats.cost,
        records=loaded.records,
        rejected=loaded.rejected,
        rejects=loaded.rejects,
        source=loaded.kind,
        layout=loaded.layout,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _outcomes(verdicts: JudgeResult | PathLike, loaded: _Loaded) -> list[InstanceOutcome]:
    """The verdicts, checked against the data record by record (same query, same negatives)."""
    if not isinstance(verdicts, JudgeResult):
        path = os.fspath(verdicts)
        rows = read_verdict_rows(path)
        out = []
        for inst in loaded.instances:
            row = next(rows, None)
            if row is None:
                raise InputError(
                    f"the verdicts file ends before record {inst.line}: was the judge run complete?", path=path
                )
            out.append(outcome_from_row(inst, row, path=path))
        if next(rows, None) is not None:
            raise InputError(
                "the verdicts file has more rows than the data has instances: was it made from this data?", path=path
            )
        return out
    judged = verdicts.verdicts
    if len(judged) != len(loaded.instances):
        raise InputError(
            f"the verdicts hold {len(judged)} instances, the data {len(loaded.instances)}: pass the "
            "data that was judged (with the same on_error)",
            path="<data>",
        )
    out = []
    for o, inst in zip(judged, loaded.instances):
        was = o.instance
        if was.query_id != inst.query_id or [p.docid for p in was.negatives] != [p.docid for p in inst.negatives]:
            raise InputError(
                f"record {inst.line} (query {inst.query_id!r}, {len(inst.negatives)} negatives) is not "
                f"the instance that was judged there (query {was.query_id!r}, {len(was.negatives)} "
                "negatives): pass the data that was judged, unchanged",
                path="<data>",
                line=inst.line,
            )
        out.append(InstanceOutcome(inst, o.candidates, o.false_negatives, o.ambiguous))
    return out


@overload
def fix(
    data: D,
    verdicts: JudgeResult | PathLike,
    *,
    op: Operation = ...,
    max_false_negatives: int | None | str = ...,
    drop_undecided: bool = ...,
    ragged: Ragged = ...,
    multi_positive: Literal["expand", "first"] = ...,
    output: PathLike | None = ...,
    out_fmt: str | None = ...,
    fmt: str | None = ...,
    on_error: Literal["fail", "skip"] = ...,
    report: Literal[False] = ...,
) -> D | list[Instance]: ...


@overload
def fix(
    data: D,
    verdicts: JudgeResult | PathLike,
    *,
    op: Operation = ...,
    max_false_negatives: int | None | str = ...,
    drop_undecided: bool = ...,
    ragged: Ragged = ...,
    multi_positive: Literal["expand", "first"] = ...,
    output: PathLike | None = ...,
    out_fmt: str | None = ...,
    fmt: str | None = ...,
    on_error: Literal["fail", "skip"] = ...,
    report: Literal[True],
) -> Fixed[D | list[Instance]]: ...


def fix(
    data: Any,
    verdicts: JudgeResult | PathLike,
    *,
    op: Operation = "relabel",
    max_false_negatives: int | None | str = AS_JUDGED,
    drop_undecided: bool = False,
    ragged: Ragged = "repeat",
    multi_positive: Literal["expand", "first"] = "expand",
    output: PathLike | None = None,
    out_fmt: str | None = None,
    fmt: str | None = None,
    on_error: Literal["fail", "skip"] = "fail",
    report: bool = False,
) -> Any:
    """Fix the false negatives of ``data`` that ``verdicts`` found; the result has the kind and columns of ``data``.

    Args:
        data: what was judged, unchanged (checked record by record against the verdicts).
        verdicts: a ``JudgeResult`` of ``negclean.judge`` on ``data``, or a ``verdicts.jsonl`` of ``negclean judge``.
        op: ``relabel`` moves false negatives to the positives (RLHN), ``hn_remove`` drops them from the
            negatives, ``remove`` drops the instance, ``none`` keeps everything.
        max_false_negatives: instances with more false negatives are dropped as ambiguous; ``"as_judged"`` keeps
            the cascade's cap, None has no cap.
        drop_undecided: also take out negatives whose final verdict is undecided (default: keep them).
        ragged: n-tuple tables: ``repeat``, ``truncate`` or ``drop`` rows left with fewer negatives (see
            ``negclean.data.tables``).
        multi_positive: sentence-transformers layouts hold one positive per row: ``expand`` writes a row per
            positive, ``first`` only the first.
        output: also write the fixed instances to this file (``out_fmt``: its format; default the input's).
        fmt, on_error: how to read ``data`` (as for ``judge``; pass the same).
        report: return ``Fixed(data, report)`` with the counts (``FixReport``) instead of the data alone.

    Returns:
        A Dataset for a Dataset, a DataFrame for a DataFrame, a list of dicts for dicts, a list of ``Instance``
        for instances or a path; ``Fixed`` when ``report=True``.
    """
    try:
        operation = Op(op)
    except ValueError:
        raise ConfigError(f"op must be one of {', '.join(o.value for o in Op)}, not {op!r}") from None
    if max_false_negatives != AS_JUDGED and not (
        max_false_negatives is None or (isinstance(max_false_negatives, int) and max_false_negatives >= 0)
    ):
        raise ConfigError(
            f"max_false_negatives must be a whole number >= 0, None or 'as_judged', not {max_false_negatives!r}"
        )
    loaded = _load(data, fmt=fmt, on_error=on_error)
    counts = FixCounts()
    kept: list[Instance] = []
    for outcome in _outcomes(verdicts, loaded):
        if max_false_negatives != AS_JUDGED:
            cap = max_false_negatives if isinstance(max_false_negatives, int) else None
            outcome = InstanceOutcome(
                outcome.instance,
                outcome.candidates,
                outcome.false_negatives,
                cap is not None and len(outcome.false_negatives) > cap,
            )
        fixed = fix_instance(outcome, operation, counts=counts, drop_undecided=drop_undecided)
        if fixed is not None:
            kept.append(fixed)
    result: Any
    extra = dict(dropped_no_negatives=0, dropped_short=0, negatives_repeated=0, negatives_cut=0)
    if loaded.layout is not None:
        rows, wc = instance_rows(kept, loaded.layout, ragged=ragged, multi_positive=multi_positive)
        result = build_table(rows, loaded.layout)
        records_out, instances_out = wc.rows, len(kept) - wc.dropped_no_negatives - wc.dropped_short
        extra.update(
            dropped_no_negatives=wc.dropped_no_negatives,
            dropped_short=wc.dropped_short,
            negatives_repeated=wc.negatives_repeated,
            negatives_cut=wc.negatives_cut,
        )
    else:
        result, records_out, instances_out = kept, len(kept), len(kept)
    if output is not None:
        _write_instances(kept, output, fmt=out_fmt or _file_format(loaded), multi_positive=multi_positive)
    summary = FixReport(
        records_in=loaded.records,
        rejected=loaded.rejected,
        records_used=loaded.records - loaded.rejected,
        instances_in=counts.instances_in,
        instances_out=instances_out,
        records_out=records_out,
        dropped_removed=counts.dropped_removed,
        dropped_ambiguous=counts.dropped_ambiguous,
        changed=counts.changed,
        relabeled=counts.relabeled,
        negatives_removed=counts.negatives_removed,
        undecided_kept=counts.undecided_kept,
        undecided_dropped=counts.undecided_dropped,
        **extra,
    )
    return Fixed(result, summary) if report else result


def _file_format(loaded: _Loaded) -> str | None:
    """The file format that holds what ``loaded`` came from (None: the output path must say it)."""
    if loaded.fmt is not None:
        return loaded.fmt
    if loaded.layout is None:
        return None
    return {"tevatron": "tevatron", "flagembedding": "flagembedding", "n-tuple": "st", "triplet": "st"}.get(
        loaded.layout.shape
    )


def _write_instances(
    instances: Iterable[Instance],
    path: PathLike,
    *,
    fmt: str | None,
    multi_positive: Literal["expand", "first"] = "expand",
) -> Path:
    if fmt is None and not os.fspath(path).lower().endswith(".parquet"):
        raise ConfigError(
            f"say which format to write {os.fspath(path)} in: fmt='tevatron', 'flagembedding', 'st' "
            "or 'parquet' (a labeled-list table has no file format of its own)"
        )
    with open_writer(path, fmt=fmt, multi_positive=multi_positive) as writer:
        for inst in instances:
            writer.write(inst)
    return Path(path)


def read(path: PathLike, *, fmt: str | None = None, on_error: Literal["fail", "skip"] = "fail") -> list[Instance]:
    """Read a training file (Tevatron/RLHN or FlagEmbedding JSON Lines, sentence-transformers columns, Parquet;
    plain or gzip) into instances. ``fmt``: the format, default detected; ``on_error="skip"`` leaves out
    unreadable lines (logged and counted) instead of raising ``InputError`` at the first."""
    return list(_load(path, fmt=fmt, on_error=on_error).instances)


def write(
    data: Data, path: PathLike, *, fmt: str | None = None, multi_positive: Literal["expand", "first"] = "expand"
) -> Path:
    """Write instances, row dicts, a Dataset or a DataFrame to a training file, atomically.

    Args:
        fmt: ``tevatron``, ``flagembedding``, ``st`` or ``parquet``; default: the layout of a table (an ``st`` table
            stays ``st``), or ``parquet`` for a ``.parquet`` path.
        multi_positive: ``st`` holds one positive per row: ``expand`` writes a row per positive, ``first`` one.
    Returns:
        The path written.
    """
    loaded = _load(data, fmt=None, on_error="fail")
    return _write_instances(loaded.instances, path, fmt=fmt or _file_format(loaded), multi_positive=multi_positive)


def mine(
    source: PathLike,
    *,
    split: str = "train",
    retriever: Literal["dense", "bm25", "hybrid"] = "dense",
    model: str = "all-MiniLM-L6-v2",
    num_negatives: int = 15,
    rank_range: str | tuple[int, int] = (10, 100),
    max_queries: int | None = None,
    output: PathLike | None = None,
    out_fmt: str | None = None,
    **options: Any,
) -> MineResult:
    """Mine hard negatives in memory for a BEIR folder's queries, or re-mine an instance file's negatives.

    Args:
        source: a BEIR folder (``corpus.jsonl[.gz]``, ``queries.jsonl``, ``qrels/<split>.tsv``) or an instance file.
        split: the BEIR qrels split whose queries are mined.
        retriever, model, num_negatives, rank_range, max_queries: as ``negclean mine`` (``rank_range="10:100"``
            skips the first 10 ranks and keeps ranks 11-100).
        output: also write the instances to this file (``out_fmt``; default tevatron for BEIR).
        **options: any other field of ``negclean.mine.MineConfig`` (``ratio``, ``sampling``, ``corpus``, ...).

    Returns:
        ``MineResult``: the instances, and the run's summary.
    """
    where = "beir" if Path(source).is_dir() else "input"
    config = MineConfig.from_options(
        {
            where: os.fspath(source),
            "split": split,
            "retriever": retriever,
            "model": model,
            "num_negatives": num_negatives,
            "rank_range": rank_range,
            "max_queries": max_queries,
            **options,
        },
        source="negclean.mine",
    )
    t0 = time.perf_counter()
    stats = MineStats(config.num_negatives)
    src = beir_source(config, stats) if config.beir is not None else instance_source(config, stats)
    t_load = time.perf_counter()
    built = build_retriever(src.corpus, config)
    t_index = time.perf_counter()
    instances: list[Instance] = []
    mine_queries(src.queries, src.corpus, built, config, instances.append, stats, total=src.total)
    t_end = time.perf_counter()
    fmt = out_fmt or ("tevatron" if config.beir is not None else getattr(src.like, "format", None))
    if output is not None:
        _write_instances(instances, output, fmt=fmt)
    summary = stats.freeze(
        output=os.fspath(output) if output is not None else "<memory>",
        fmt=fmt or "tevatron",
        params=config.params(),
        params_hash=config.params_hash(),
        retriever=built.describe(),
        score_name=built.score_name,
        filter_score_name=built.filter_score_name,
        seconds={"read": t_load - t0, "retriever": t_index - t_load, "mine": t_end - t_index, "total": t_end - t0},
    )
    if summary.shortfall.queries_short:  # never silent, as with `negclean mine`
        logging.getLogger("negclean.mine").warning(next(x for x in summary.lines() if x.startswith("SHORTFALL")))
    return MineResult(tuple(instances), summary)


def evaluate(
    model: str,
    beir: PathLike,
    *,
    split: str = "test",
    kind: Literal["retriever", "reranker"] | None = None,
    measures: Sequence[str] | None = None,
    output_dir: PathLike | None = None,
    **options: Any,
) -> EvalResult:
    """Evaluate a retriever (full retrieval) or a reranker (re-ranking a first stage) on a BEIR split.

    Args:
        model: a model name or folder (its kind and prefixes default to what negclean trained it with).
        beir: a BEIR folder; ``split`` its qrels split.
        measures: ir-measures names (default ``negclean.evaluate.DEFAULT_MEASURES``, nDCG@10 first).
        output_dir: also write the run and per-query scores there.
        **options: any other option of ``negclean.evaluate.runner.evaluate`` (``first_stage``, ``top_k``,
            ``max_seq_length``, ``device``, ...).

    Returns:
        ``EvalResult``: mean ``scores`` per measure, ``per_query`` values, files written.
    """
    return run_evaluation(
        model=model,
        beir=os.fspath(beir),
        split=split,
        kind=kind,
        output_dir=None if output_dir is None else os.fspath(output_dir),
        measures=tuple(measures) if measures is not None else DEFAULT_MEASURES,
        **options,
    )


# negclean.judge, .fix, .mine and .evaluate are these functions and also subpackages. `import negclean.judge.x as y`
# looks up `judge` on negclean (this function), fails to find `x` on it, then imports f"{judge.__name__}.x": the
# full name keeps that statement working.
for _function in (judge, fix, mine, evaluate):
    _function.__name__ = f"negclean.{_function.__name__}"
del _function
