"""Mining hard negatives: retrievers (dense + FAISS, BM25, hybrid), selection, the `negclean mine` run.

Heavy libraries (sentence-transformers, faiss, bm25s) load only when a retriever is built.
"""

from negclean.mine.config import MineConfig
from negclean.mine.mine import mine as _mine

__all__ = ["MineConfig", "mine"]


def mine(*args, **kwargs):
    """See ``negclean.mine.mine.mine``."""

    return _mine(*args, **kwargs)
