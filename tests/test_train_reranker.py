"""Training a cross-encoder from the MiniLM checkpoint (tiny data): binary and listwise losses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from negclean.data.records import Instance, Passage

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")

FACTS = [
    ("what do cats do when content", "Cats purr when they are content."),
    ("how do rockets reach orbit", "Rockets burn fuel to reach orbit."),
    ("why does bread rise", "Bread dough rises because of yeast."),
    ("where do rivers flow", "Rivers carry water to the sea."),
    ("what do volcanoes erupt", "Volcanoes erupt molten lava."),
    ("which chess piece is strongest", "The queen is the strongest chess piece."),
]


def instances():
    out = []
    for i, (q, pos) in enumerate(FACTS):
        negs = tuple(Passage(f"d{j}", FACTS[j][1]) for j in range(len(FACTS)) if j != i)[:3]
        out.append(Instance(f"q{i}", q, (Passage(f"d{i}", pos),), negs))
    return out


def pair_margin(ce, data):
    """Mean over instances of score(positive) - max score(negative)."""
    out = []
    for x in data:
        s = ce.predict([(x.query, p.text) for p in (*x.positives, *x.negatives)], convert_to_numpy=True)
        out.append(float(s[0] - s[1:].max()))
    return np.array(out)


def test_bce_training_learns_the_pairs(tmp_path):
    from sentence_transformers import CrossEncoder

    from negclean.train import TrainConfig, train

    data = instances()
    cfg = TrainConfig(
        kind="reranker",
        epochs=4,
        batch_size=8,
        hard_negatives=3,
        learning_rate=2e-4,
        warmup_ratio=0.0,
        max_seq_length=48,
        seed=5,
        logging_steps=1,
        threads=1,
        device="cpu",
    )
    result = train(data, output_dir=tmp_path / "ce", config=cfg, show_progress=False)
    ce = CrossEncoder(str(tmp_path / "ce"), device="cpu")
    after = pair_margin(ce, data)
    # a fresh head scores every pair about the same; after training the positive wins on most training pairs
    assert (after > 0).sum() >= 5, after
    assert result.rows == 6 * 4  # (1 positive + 3 negatives) per query and epoch
    assert result.steps == 12 and result.epochs_served == (0, 1, 2, 3)
    assert result.loss_history[-1][1] < result.loss_history[0][1]
    saved = json.loads((tmp_path / "ce" / "negclean_train.json").read_text())
    assert saved["kind"] == "reranker" and saved["config"]["reranker_loss"] == "bce"


def test_listwise_loss_trains_and_saves(tmp_path):
    from sentence_transformers import CrossEncoder

    from negclean.train import TrainConfig, train

    cfg = TrainConfig(
        kind="reranker",
        reranker_loss="listnet",
        epochs=1,
        batch_size=3,
        hard_negatives=2,
        max_seq_length=32,
        max_steps=2,
        threads=1,
        device="cpu",
    )
    result = train(instances(), output_dir=tmp_path / "ce", config=cfg, show_progress=False)
    assert result.steps == 2 and result.rows == 6
    scores = CrossEncoder(str(tmp_path / "ce"), device="cpu").predict([("a query", "a passage")])
    assert np.isfinite(scores).all()


def test_reranker_needs_negatives(tmp_path):
    from negclean.errors import ConfigError
    from negclean.train import TrainConfig, train

    with pytest.raises(ConfigError, match="negatives"):
        train(instances(), output_dir=tmp_path / "ce", config=TrainConfig(kind="reranker", hard_negatives=0))
