"""Evaluating retrievers and rerankers on BEIR-style data (ir-measures) and comparing systems with paired
significance tests. Heavy libraries load only when used.

    from negclean.evaluate import evaluate
    result = evaluate(model="models/relabel", beir="data/scifact", split="test", output_dir="evals/relabel")
    print(result.scores["nDCG@10"])
"""

from __future__ import annotations

from negclean.evaluate.compare import compare as _compare
from negclean.evaluate.measures import DEFAULT_MEASURES
from negclean.evaluate.runner import evaluate as _evaluate

__all__ = ["DEFAULT_MEASURES", "compare", "evaluate"]


def evaluate(**kwargs):
    """See ``negclean.evaluate.runner.evaluate``."""

    return _evaluate(**kwargs)


def compare(*args, **kwargs):
    """See ``negclean.evaluate.compare.compare``."""

    return _compare(*args, **kwargs)
