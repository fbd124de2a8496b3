"""Training a bi-encoder (real MiniLM, tiny data): it changes the model and improves its fit on the training pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from negclean.data.records import Instance, Passage

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")

# Arbitrary query -> positive associations the base model cannot know; negatives are other instances' texts.
PAIRS = [
    ("code word amber", "The lighthouse keeper paints his boat every spring."),
    ("code word basalt", "A violin needs new strings before the concert."),
    ("code word cobalt", "Farmers harvest wheat at the end of the summer."),
    ("code word dune", "The museum opened a new wing for ancient coins."),
    ("code word ember", "Penguins huddle together to survive the winter."),
    ("code word fjord", "The chess club meets on Tuesday evenings."),
    ("code word garnet", "Volcanic soil is rich in minerals for vineyards."),
    ("code word harbor", "The train to the capital leaves at noon."),
]


def instances():
    out = []
    for i, (q, pos) in enumerate(PAIRS):
        negs = tuple(Passage(f"d{j}", PAIRS[j][1]) for j in ((i + 1) % 8, (i + 3) % 8, (i + 5) % 8))
        extra = (Passage(f"x{i}", f"Another note: {pos.lower()}"),) if i == 0 else ()
        out.append(Instance(f"q{i}", q, (Passage(f"d{i}", pos),) + extra, negs))
    return out


def margins(model, data):
    """Per instance: cosine(query, first positive) - max cosine(query, negative)."""
    q = model.encode([x.query for x in data], normalize_embeddings=True)
    out = []
    for i, x in enumerate(data):
        p = model.encode([x.positives[0].text], normalize_embeddings=True)[0]
        n = model.encode([y.text for y in x.negatives], normalize_embeddings=True)
        out.append(float(q[i] @ p - (n @ q[i]).max()))
    return np.array(out)


def test_training_changes_the_model_and_improves_fit(tmp_path):
    from sentence_transformers import SentenceTransformer

    from negclean.embed import resolve_model
    from negclean.train import TrainConfig, train

    data = instances()
    base = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    before = margins(base, data)
    cfg = TrainConfig(
        epochs=3,
        batch_size=4,
        hard_negatives=3,
        learning_rate=1e-4,
        warmup_ratio=0.0,
        max_seq_length=32,
        seed=11,
        logging_steps=1,
        device="cpu",
        threads=1,
    )
    result = train(data, output_dir=tmp_path / "model", config=cfg, show_progress=False)

    trained = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    after = margins(trained, data)
    assert after.mean() > before.mean() + 0.1, (before, after)
    assert (after > before).sum() >= 6
    # weights moved
    w0 = base[0].auto_model.encoder.layer[0].attention.self.query.weight.detach().numpy()
    w1 = trained[0].auto_model.encoder.layer[0].attention.self.query.weight.detach().numpy()
    assert np.abs(w0 - w1).max() > 1e-4
    # the run: 8 queries, batch 4, 3 epochs -> 6 steps, each epoch its own block (positives rotate)
    assert result.steps == 6 and result.epochs_served == (0, 1, 2)
    assert result.groups["multi_positive"] == 1 and result.rows == 8
    assert result.loss_history[-1][1] < result.loss_history[0][1]
    saved = json.loads((tmp_path / "model" / "negclean_train.json").read_text())
    assert saved["kind"] == "retriever" and saved["config"]["seed"] == 11 and saved["config_hash"] == cfg.params_hash()
    assert trained.max_seq_length == 32


def test_bad_inputs_give_actionable_errors(tmp_path):
    from negclean.errors import ConfigError, InputError
    from negclean.train import TrainConfig, train

    with pytest.raises(InputError, match="empty"):
        train([], output_dir=tmp_path / "m", config=TrainConfig())
    with pytest.raises(ConfigError, match="at least 2"):
        train(instances()[:1], output_dir=tmp_path / "m", config=TrainConfig(hard_negatives=1))
    with pytest.raises(ConfigError, match="cannot load model"):
        train(instances(), output_dir=tmp_path / "m", config=TrainConfig(model=str(tmp_path / "nope")))
    assert not (tmp_path / "m").exists()


def test_train_cli_config_file_and_flags(tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app

    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "query_id": x.query_id,
                    "query": x.query,
                    "positive_passages": [{"docid": p.docid, "title": "", "text": p.text} for p in x.positives],
                    "negative_passages": [{"docid": p.docid, "title": "", "text": p.text} for p in x.negatives],
                }
            )
            + "\n"
            for x in instances()
        )
    )
    options = tmp_path / "train.yaml"
    options.write_text("train:\n  batch_size: 4\n  hard_negatives: 2\n  max_seq_length: 24\n  seed: 1\n")
    res = CliRunner().invoke(
        app,
        [
            "train",
            "retriever",
            str(data),
            "-o",
            str(tmp_path / "m"),
            "--config",
            str(options),
            "--seed",
            "9",
            "--max-steps",
            "1",
            "--threads",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["steps"] == 1 and out["data"] == str(data)
    assert out["config"]["batch_size"] == 4 and out["config"]["seed"] == 9 and out["config"]["hard_negatives"] == 2
    res = CliRunner().invoke(app, ["train", "retriever", str(data), "-o", str(tmp_path / "m2"), "--epochs", "0"])
    assert res.exit_code == 2 and "epochs" in res.output


def test_same_seed_same_weights(tmp_path):
    from safetensors.numpy import load_file

    from negclean.train import TrainConfig, train

    def weights(name, seed):
        cfg = TrainConfig(
            epochs=1, batch_size=4, hard_negatives=2, max_seq_length=24, max_steps=2, seed=seed, threads=1, device="cpu"
        )
        train(instances(), output_dir=tmp_path / name, config=cfg, show_progress=False)
        return load_file(str(tmp_path / name / "model.safetensors"))

    a, b, c = weights("a", 5), weights("b", 5), weights("c", 6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
