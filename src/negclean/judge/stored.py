"""A judgment store read by a judge: the verdicts of earlier judges, read-only.

The learned judge's ``prior`` feature reads an earlier stage's confidences. The store itself
(``negclean.cascade.store.JudgmentStore``) belongs to the cascade, a later layer, and owns the schema; this
reader opens the same SQLite file read-only (``mode=ro``: it never creates or migrates a store) and reads the
``judges`` and ``verdicts`` tables, as ``JudgmentStore.judges`` / ``verdicts_of`` do
(tests/test_stored_verdicts.py checks that both give the same answers).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from negclean.errors import ConfigError, StoreError
from negclean.judge.base import Grade, Label, Verdict

Key = tuple[str, str, str]


class StoredVerdicts:
    """Read-only access to a judgment store's judges and verdicts (a ``learned_features.VerdictSource``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ConfigError(
                f"judgment store {self.path} not found: prior_store must name the store of the run "
                "whose judge the prior feature reads"
            )
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, timeout=30.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open judgment store {self.path} read-only: {exc}") from None

    def _rows(self, sql: str, args: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return [tuple(r) for r in self._conn.execute(sql, args)]
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: not a readable judgment store ({exc}); prior_store must name a store written by negclean"
            ) from None

    def judges(self) -> list[tuple[str, str, str]]:
        """(fingerprint, judge_id, config JSON) of every judge registered in the store."""
        return [
            (str(fp), str(jid), str(cfg))
            for fp, jid, cfg in self._rows("SELECT fingerprint, judge_id, config FROM judges")
        ]

    def verdicts_of(self, fingerprint: str) -> dict[Key, Verdict]:
        """Every stored verdict of one judge, by store key."""
        rows = self._rows(
            "SELECT query_key, positives_key, passage_key, judge_id, label, grade, confidence, "
            "reason, call_id FROM verdicts WHERE fingerprint=?",
            (fingerprint,),
        )
        out: dict[Key, Verdict] = {}
        for qk, pk, ck, jid, label, grade, conf, reason, call_id in rows:
            out[(str(qk), str(pk), str(ck))] = Verdict(
                Label(str(label)),
                None if conf is None else float(conf),  # type: ignore[arg-type]
                str(jid),
                Grade(str(grade)) if grade else None,
                str(reason),
                None if call_id is None else str(call_id),
            )
        return out

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StoredVerdicts:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["StoredVerdicts"]
