"""Qrels judge: verdicts from known relevance labels (an oracle for benchmarks and tests).

Reads TREC qrels (``qid iter docid grade``, white-space separated, no header) or BEIR qrels
(tab-separated ``query-id corpus-id score`` with a header line), plain or gzipped.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Sequence

from negclean.errors import InputError
from negclean.judge.base import Grade, JudgeTask, Label, TaskResult, Verdict
from negclean.judge.config import QrelsJudgeConfig

Qrels = dict[str, dict[str, int]]


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


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
        raise InputError("qrels file not found; give a TREC (qid 0 docid grade) or BEIR "
                         "(query-id<TAB>corpus-id<TAB>score) file", path=str(path))
    qrels: Qrels = {}
    first = True
    with _open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            fields = raw.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) == 4:
                qid, _, docid, grade = fields
            elif len(fields) == 3:
                qid, docid, grade = fields
            else:
                raise InputError(f"expected 3 fields (BEIR) or 4 fields (TREC), found {len(fields)}",
                                 path=str(path), line=lineno)
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


class QrelsJudge:
    """Relevant when the qrels grade of (query id, docid) is at least ``min_grade``.

    Unjudged pairs are not_relevant (confidence None) or undecided, as the config says. Judged pairs
    get confidence 1.0 (relevant) or 0.0 (judged not relevant).
    """

    listwise = False
    keys_by_id = True  # decides by (query id, docid): the cascade stores its verdicts per id, not per text

    def __init__(self, config: QrelsJudgeConfig):
        self.config = config
        path = Path(config.path)
        self.qrels = read_qrels(path)
        self.judge_id = config.judge_id()
        self.fingerprint = config.fingerprint()  # covers the file's content (QrelsJudgeConfig.content_identity)

    def judge(self, tasks: Sequence[JudgeTask]) -> list[TaskResult]:
        return [TaskResult(tuple(self._verdict(task.instance.query_id, p.docid) for p in task.passages))
                for task in tasks]

    def _verdict(self, query_id: str, docid: str) -> Verdict:
        judged = self.qrels.get(query_id)
        grade = None if judged is None else judged.get(docid)
        if grade is None:
            reason = "query not in qrels" if judged is None else "pair not judged in qrels"
            if self.config.unjudged == "undecided":
                return Verdict(Label.UNDECIDED, None, self.judge_id, reason=reason)
            return Verdict(Label.NOT_RELEVANT, None, self.judge_id, reason=reason)
        if grade >= self.config.min_grade:
            return Verdict(Label.RELEVANT, 1.0, self.judge_id, grade=Grade.BETTER, reason=f"qrels grade {grade}")
        return Verdict(Label.NOT_RELEVANT, 0.0, self.judge_id, reason=f"qrels grade {grade}")

    def estimate_tokens(self, task: JudgeTask) -> tuple[int, int]:
        return (0, 0)
