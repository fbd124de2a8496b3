"""negclean: find and fix false negatives in retriever and reranker training data."""

__version__ = "0.1.0"
