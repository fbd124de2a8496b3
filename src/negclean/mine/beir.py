"""BEIR-style folders (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv) and the corpus record mining uses."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from negclean.data import gz
from negclean.data.qrels import Qrels, read_qrels
from negclean.data.records import Passage
from negclean.errors import InputError


class Corpus:
    """Passages addressed by position (0..n-1), with docids, and a hash of the whole content.

    ``content_hash`` covers every (docid, title, text) in order: it keys the embedding cache, so any
    change to the corpus gives fresh embeddings.
    """

    def __init__(
        self,
        ids: list[str],
        titles: list[str],
        texts: list[str],
        *,
        source: str = "",
        content_hash: str | None = None,
        duplicate_ids: int = 0,
    ):
        if not (len(ids) == len(titles) == len(texts)):
            raise ValueError("ids, titles and texts must have the same length")
        self.ids = ids
        self.titles = titles
        self.texts = texts
        self.source = source
        self.duplicate_ids = duplicate_ids
        self.content_hash = content_hash or _hash_docs(zip(ids, titles, texts))
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, docid: str) -> int | None:
        if self._index is None:
            self._index = {d: i for i, d in enumerate(self.ids)}
        return self._index.get(docid)

    def docid(self, i: int) -> str:
        return self.ids[i]

    def title(self, i: int) -> str:
        return self.titles[i]

    def text(self, i: int) -> str:
        return self.texts[i]

    def indexed_text(self, i: int, *, include_title: bool) -> str:
        """What the retriever sees: 'title text' (BEIR convention) or the text alone."""
        title = self.titles[i]
        return f"{title} {self.texts[i]}" if include_title and title else self.texts[i]

    def indexed_texts(self, start: int, stop: int, *, include_title: bool) -> list[str]:
        return [self.indexed_text(i, include_title=include_title) for i in range(start, min(stop, len(self)))]

    def passage(self, i: int, *, score: float | None = None, rank: int | None = None, meta=None) -> Passage:
        if meta:
            return Passage(self.ids[i], self.texts[i], self.titles[i], score, rank, meta)
        return Passage(self.ids[i], self.texts[i], self.titles[i], score, rank)


def _hash_docs(docs: Iterable[tuple[str, str, str]]) -> str:
    digest = hashlib.sha256()
    for docid, title, text in docs:
        digest.update(f"{docid}\x1f{title}\x1f{text}\x1e".encode())
    return digest.hexdigest()[:32]


def _rows(path: Path, *, needs: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    with gz.open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"not valid JSON ({exc.msg} at column {exc.colno})", path=str(path), line=lineno
                ) from None
            if not isinstance(row, dict):
                raise InputError("expected a JSON object per line", path=str(path), line=lineno)
            for key in needs:
                if key not in row:
                    raise InputError(
                        f"missing field '{key}' (BEIR rows need {', '.join(needs)})", path=str(path), line=lineno
                    )
            yield lineno, row


def _str(value, path: Path, line: int, field: str) -> str:
    if isinstance(value, str):
        return value
    if value is None and field == "title":
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and field == "_id":
        return str(value)
    raise InputError(f"field '{field}' must be a string, got {type(value).__name__}", path=str(path), line=line)


def read_corpus(path: str | Path) -> Corpus:
    """Read a BEIR corpus.jsonl[.gz] (``_id``, ``title``, ``text``). A repeated ``_id`` keeps its first row."""
    path = Path(path)
    if not path.is_file():
        raise InputError("corpus file not found", path=str(path))
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    for lineno, row in _rows(path, needs=("_id", "text")):
        docid = _str(row["_id"], path, lineno, "_id")
        if docid in seen:
            duplicates += 1
            continue
        seen.add(docid)
        ids.append(docid)
        titles.append(_str(row.get("title"), path, lineno, "title"))
        texts.append(_str(row["text"], path, lineno, "text"))
    if not ids:
        raise InputError("corpus is empty", path=str(path))
    return Corpus(ids, titles, texts, source=str(path), duplicate_ids=duplicates)


def read_queries(path: str | Path) -> dict[str, str]:
    """Read a BEIR queries.jsonl[.gz] into ``{query_id: text}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError("queries file not found", path=str(path))
    return {
        _str(row["_id"], path, n, "_id"): _str(row["text"], path, n, "text")
        for n, row in _rows(path, needs=("_id", "text"))
    }


@dataclass(frozen=True, slots=True)
class BeirFolder:
    """The three files of a BEIR folder for one split."""

    root: Path
    corpus: Path
    queries: Path
    qrels: Path
    split: str

    @classmethod
    def locate(cls, root: str | Path, *, split: str = "train") -> BeirFolder:
        root = Path(root)
        if not root.is_dir():
            raise InputError(
                "BEIR folder not found (expected a folder with corpus.jsonl, queries.jsonl, qrels/<split>.tsv)",
                path=str(root),
            )
        corpus = _first(root, ("corpus.jsonl", "corpus.jsonl.gz"))
        queries = _first(root, ("queries.jsonl", "queries.jsonl.gz"))
        qrels = _first(root / "qrels", (f"{split}.tsv", f"{split}.tsv.gz"))
        if qrels is None:
            have = (
                sorted(p.name.split(".")[0] for p in (root / "qrels").glob("*.tsv*"))
                if (root / "qrels").is_dir()
                else []
            )
            hint = f"; splits here: {', '.join(have)}" if have else ""
            raise InputError(f"no qrels for split '{split}' (qrels/{split}.tsv){hint}", path=str(root))
        for name, found in (("corpus.jsonl[.gz]", corpus), ("queries.jsonl[.gz]", queries)):
            if found is None:
                raise InputError(f"no {name} in the BEIR folder", path=str(root))
        return cls(root, corpus, queries, qrels, split)  # type: ignore[arg-type]

    def read_qrels(self) -> Qrels:
        return read_qrels(self.qrels)


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None
