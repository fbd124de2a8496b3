"""Tables (and bar charts where the numbers allow) from result JSON whose schema the report does not know.

``experiment.json`` and ``bench_judges.json`` are written by other commands and may grow fields; the
report shows whatever they hold: lists of records become tables, mappings of records become tables
with one row per key, scalars become a key/value table, and numeric columns get a grouped bar chart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from negclean.report.charts import grouped_bars

_MAX_DEPTH = 4
_MAX_ROWS = 500
_MAX_CHART_ROWS = 24
_MAX_CHART_SERIES = 4


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    chart: str = ""
    truncated: int = 0


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def cell(v: Any) -> str:
    """A value as table text: floats to 4 significant digits, nested values as compact JSON."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if _is_scalar(v):
        return str(v)
    text = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 120 else text[:119] + "…"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _records_table(title: str, records: list[dict], *, index: list[str] | None = None, charts: bool = True) -> Table:
    headers: list[str] = ["name"] if index is not None else []
    for r in records:
        for k in r:
            if k not in headers:
                headers.append(k)
    rows = []
    for i, r in enumerate(records[:_MAX_ROWS]):
        row = [index[i]] if index is not None else []
        row += [cell(r.get(h)) for h in headers[len(row) :]]
        rows.append(tuple(row))
    return Table(
        title,
        tuple(headers),
        tuple(rows),
        _chart(headers, records, index) if charts else "",
        max(0, len(records) - _MAX_ROWS),
    )


def _chart(headers: list[str], records: list[dict], index: list[str] | None) -> str:
    """Grouped bars of the numeric columns against the first text column (or the row names)."""
    if not 1 < len(records) <= _MAX_CHART_ROWS:
        return ""
    if index is not None:
        labels = index
    else:
        text_cols = [h for h in headers if all(isinstance(r.get(h), str) for r in records)]
        if not text_cols:
            return ""
        labels = [r[text_cols[0]] for r in records]
    numeric = [
        h
        for h in headers
        if all(_is_number(r.get(h)) or r.get(h) is None for r in records) and any(_is_number(r.get(h)) for r in records)
    ]
    # ids and counts would dwarf the metrics on a shared axis
    numeric = [h for h in numeric if h.lower() not in ("n", "seed", "count", "line", "index")][:_MAX_CHART_SERIES]
    if not numeric:
        return ""
    return grouped_bars(labels, {h: [r.get(h) for r in records] for h in numeric})


def tables_from_json(data: Any, title: str, *, depth: int = 0, charts: bool = True) -> list[Table]:
    """Every table that can be read out of a JSON value; see the module docstring.

    ``charts=False`` leaves the bar charts out (matplotlib, the ``report`` extra, is not installed).
    """
    if depth > _MAX_DEPTH:
        return [Table(title, ("value",), ((cell(data),),))]
    if isinstance(data, list):
        if data and all(isinstance(r, dict) for r in data):
            return [_records_table(title, data, charts=charts)]
        return [
            Table(title, ("value",), tuple((cell(v),) for v in data[:_MAX_ROWS]), "", max(0, len(data) - _MAX_ROWS))
        ]
    if not isinstance(data, dict):
        return [Table(title, ("value",), ((cell(data),),))]
    out: list[Table] = []
    scalars = [(k, v) for k, v in data.items() if _is_scalar(v) or (isinstance(v, list) and all(map(_is_scalar, v)))]
    if scalars:
        out.append(Table(title, ("field", "value"), tuple((str(k), cell(v)) for k, v in scalars)))
    nested = {k: v for k, v in data.items() if not (_is_scalar(v) or (isinstance(v, list) and all(map(_is_scalar, v))))}
    # a mapping of flat records ({"default": {"ndcg@10": .41}, "rlhn": {...}}): one table, a row per key
    flat = {k: v for k, v in nested.items() if isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values())}
    if len(flat) >= 2:
        out.append(
            _records_table(
                title if not scalars else f"{title}: by name",
                list(flat.values()),
                index=[str(k) for k in flat],
                charts=charts,
            )
        )
        nested = {k: v for k, v in nested.items() if k not in flat}
    for k, v in nested.items():
        out.extend(tables_from_json(v, f"{title} › {k}", depth=depth + 1, charts=charts))
    return out
