"""Reading relevance judgments (qrels): TREC (``qid iter docid grade``, white-space separated, no header) or
BEIR (tab-separated ``query-id corpus-id score`` with a header line), plain or gzipped.

Used by mining (BEIR folders), the qrels judge, evaluation and the judge benchmarks.
"""

from __future__ import annotations

from pathlib import Path

from negclean.data import gz
from negclean.errors import InputError

Qrels = dict[str, dict[str, int]]


def _grade(token: str, path: Path, line: int) -> int:
    try:
        value = float(token)
    except ValueError:
        raise InputError(f"relevance grade {token!r} is not a number", path=str(path), line=line) from None
    if value != int(value):
        raise InputError(f"relevance grade {token!r} is not a whole number", path=str(path), line=line)
    return int(value)


def read_qrels(path: str | Path) -> Qrels:
    """Read a TREC or BEIR qrels file into ``{query_id: {doc_id: grade}}``.

    The layout is detected per line from the number of fields (4: TREC, 3: BEIR). A first line whose
    grade field is not a number is taken as a header. A pair listed twice keeps the last grade.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "qrels file not found; give a TREC (qid 0 docid grade) or BEIR (query-id<TAB>corpus-id<TAB>score) file",
            path=str(path),
        )
    qrels: Qrels = {}
    first = True
    with gz.open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            fields = raw.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) == 4:
                qid, _, docid, grade = fields
            elif len(fields) == 3:
                qid, docid, grade = fields
            else:
                raise InputError(
                    f"expected 3 fields (BEIR) or 4 fields (TREC), found {len(fields)}", path=str(path), line=lineno
                )
            if first and _is_header(grade):
                first = False
                continue
            first = False
            qrels.setdefault(qid, {})[docid] = _grade(grade, path, lineno)
    return qrels


def _is_header(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return True
    return False


__all__ = ["Qrels", "read_qrels"]
