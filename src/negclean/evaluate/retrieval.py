"""Runs to evaluate: full dense retrieval with a bi-encoder, BM25, and re-ranking with a cross-encoder.

Dense retrieval and BM25 reuse the mining stage's retrievers, so corpus embeddings (and the BM25 index)
come from the same on-disk cache: the base model's corpus embeddings made while mining are not computed
again when the base model is evaluated, and a model evaluated twice is embedded once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from negclean.embed import Embedder, load_model, text_char_limit
from negclean.evaluate.measures import Qrels, Run, evaluated_queries, sorted_docs
from negclean.mine.beir import BeirFolder, read_corpus, read_queries
from negclean.mine.bm25 import BM25Retriever
from negclean.mine.config import MineConfig
from negclean.mine.dense import DenseRetriever

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BeirSplit:
    """A BEIR folder read for one split: the corpus, the texts of the qrels' queries and the qrels;
    ``missing_queries`` counts qrels queries without a text (they score 0)."""

    root: str
    split: str
    corpus: object  # negclean.mine.beir.Corpus
    queries: Mapping[str, str]
    qrels: Qrels
    qrels_path: str
    missing_queries: int


def load_beir_split(root: str | Path, *, split: str = "test") -> BeirSplit:
    """Read corpus, queries and ``qrels/<split>.tsv``; the queries evaluated are those of the qrels."""

    folder = BeirFolder.locate(root, split=split)
    corpus = read_corpus(folder.corpus)
    texts = read_queries(folder.queries)
    qrels = folder.read_qrels()
    wanted = evaluated_queries(qrels)
    queries = {q: texts[q] for q in wanted if q in texts}
    return BeirSplit(str(root), split, corpus, queries, qrels, str(folder.qrels), len(wanted) - len(queries))


class _Embedder:
    """The embedder protocol of the mining retriever, for a freshly loaded model; ``identity`` (the
    embedding-cache key) includes a max_seq_length override, which changes the vectors."""

    def __init__(self, model, *, name: str, max_seq_length: int | None):
        self._inner = Embedder(model, name=name)
        self._override = max_seq_length

    @property
    def identity(self) -> str:
        base = self._inner.identity
        return base if self._override is None else f"{base}|max_seq_length={self._override}"

    @property
    def dim(self) -> int:
        return self._inner.dim

    def encode(self, texts, *, prefix: str = "", batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        return self._inner.encode(texts, prefix=prefix, batch_size=batch_size, show_progress=show_progress)


def load_eval_embedder(model: str, *, max_seq_length: int | None = None, device: str | None = None) -> _Embedder:
    """A bi-encoder for evaluation (the packaged MiniLM for its names), optionally with a shorter limit."""

    st_model = load_model(
        "SentenceTransformer",
        model,
        extra="embed",
        purpose="Evaluating a retriever",
        what=f"retriever '{model}'",
        device=device,
        hint="Give a model folder (e.g. one written by `negclean train retriever`) or all-MiniLM-L6-v2",
    )
    if max_seq_length is not None:
        st_model.max_seq_length = max_seq_length
    return _Embedder(st_model, name=model, max_seq_length=max_seq_length)


def _mine_config(data: BeirSplit, **options):
    return MineConfig.from_options({"beir": data.root, "split": data.split, **options}, source="evaluation")


def _to_run(
    data: BeirSplit, qids: list[str], indices: np.ndarray, scores: np.ndarray, *, depth: int, ignore_identical_ids: bool
) -> Run:
    corpus = data.corpus
    run: Run = {}
    for qid, row, vals in zip(qids, indices, scores):
        docs: dict[str, float] = {}
        for pos, val in zip(row, vals):
            if pos < 0 or len(docs) == depth:
                continue
            docid = corpus.docid(int(pos))  # type: ignore[attr-defined]
            if ignore_identical_ids and docid == qid:
                continue
            docs[docid] = float(val)
        run[qid] = docs
    return run


def _chunks(items: list[str], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dense_run(
    data: BeirSplit,
    *,
    model: str,
    depth: int = 100,
    query_prefix: str = "",
    passage_prefix: str = "",
    include_title: bool = True,
    max_seq_length: int | None = None,
    batch_size: int = 64,
    cache_dir: str | None = None,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
    device: str | None = None,
    on_progress: Progress | None = None,
) -> tuple[Run, dict]:
    """Exact inner-product retrieval of the top ``depth`` for every evaluated query; (run, details)."""

    embedder = load_eval_embedder(model, max_seq_length=max_seq_length, device=device)
    cfg = _mine_config(
        data,
        model=model,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        include_title=include_title,
        batch_size=batch_size,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
    retriever = DenseRetriever(data.corpus, cfg, embedder=embedder, on_progress=on_progress)  # type: ignore[arg-type]
    qids = list(data.queries)
    run: Run = {}
    extra = 1 if ignore_identical_ids else 0
    for chunk in _chunks(qids, 1024):
        res = retriever.retrieve(
            [data.queries[q] for q in chunk], depth=depth + extra, docs=[np.zeros(0, dtype=np.int64)] * len(chunk)
        )
        run.update(
            _to_run(data, chunk, res.indices, res.scores, depth=depth, ignore_identical_ids=ignore_identical_ids)
        )
        if on_progress:
            on_progress("searching", len(run), len(qids))
    return run, {"first_stage": "dense", **retriever.describe(), "embedder_identity": embedder.identity}


def bm25_run(
    data: BeirSplit,
    *,
    depth: int = 100,
    include_title: bool = True,
    cache_dir: str | None = None,
    use_cache: bool = True,
    ignore_identical_ids: bool = True,
) -> tuple[Run, dict]:
    """BM25 (bm25s, English stop words) top ``depth`` for every evaluated query; (run, details)."""

    cfg = _mine_config(data, retriever="bm25", include_title=include_title, cache_dir=cache_dir, use_cache=use_cache)
    retriever = BM25Retriever(data.corpus, cfg)  # type: ignore[arg-type]
    qids = list(data.queries)
    extra = 1 if ignore_identical_ids else 0
    res = retriever.retrieve(
        [data.queries[q] for q in qids], depth=depth + extra, docs=[np.zeros(0, dtype=np.int64)] * len(qids)
    )
    run = _to_run(data, qids, res.indices, res.scores, depth=depth, ignore_identical_ids=ignore_identical_ids)
    return run, {"first_stage": "bm25", **retriever.describe()}


def rerank_run(
    data: BeirSplit,
    first_stage: Run,
    *,
    model: str,
    top_k: int = 100,
    include_title: bool = True,
    query_prefix: str = "",
    passage_prefix: str = "",
    max_seq_length: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    show_progress: bool = False,
) -> Run:
    """Score the top ``top_k`` documents of ``first_stage`` per query with a cross-encoder; a run of those."""
    ce = load_model(
        "CrossEncoder",
        model,
        extra="embed",
        purpose="Evaluating a reranker",
        what=f"reranker '{model}'",
        hint="Give a folder written by `negclean train reranker`",
        device=device,
        max_length=max_seq_length,
    )
    corpus = data.corpus
    limit = text_char_limit(getattr(ce, "max_length", None))  # cut before tokenizing: memory bounded
    pairs: list[tuple[str, str]] = []
    owners: list[tuple[str, str]] = []
    for qid in data.queries:
        for docid, _ in sorted_docs(first_stage.get(qid, {}))[:top_k]:
            pos = corpus.position(docid)  # type: ignore[attr-defined]
            if pos is None:
                continue
            text = corpus.indexed_text(pos, include_title=include_title)  # type: ignore[attr-defined]
            pairs.append((query_prefix + data.queries[qid][:limit], passage_prefix + text[:limit]))
            owners.append((qid, docid))
    run: Run = {qid: {} for qid in data.queries}
    if pairs:
        scores = ce.predict(pairs, batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True)
        for (qid, docid), score in zip(owners, np.asarray(scores, dtype=np.float64).reshape(-1)):
            run[qid][docid] = float(score)
    return run


__all__ = ["BeirSplit", "bm25_run", "dense_run", "load_beir_split", "load_eval_embedder", "rerank_run"]
