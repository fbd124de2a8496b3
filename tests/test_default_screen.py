"""The default free screen: within-list features, the packaged model (`path: default`), and the presets using it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from negclean.data.records import Instance, Passage
from negclean.learned.features import FEATURES, compute_features, within_z

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "msmarco_hn_scored.jsonl"


class TableEmbedder:
    def __init__(self, vectors):
        self.vectors = {k: np.asarray(v, dtype=np.float64) / np.linalg.norm(v) for k, v in vectors.items()}

    def encode(self, texts, *, prefix="", batch_size=64, show_progress=False):
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 2))


def _instance():
    # q = (1, 0); positive (0.6, 0.8): s(q,p) = 0.6. Negatives: a (1, 0), b (0, 1), c (0.8, 0.6)
    # s(q,c) = 1, 0, 0.8; s(p,c) = 0.6, 0.8, 0.96
    emb = TableEmbedder({"q": [1, 0], "pos text": [0.6, 0.8], "apple": [1, 0], "banana": [0, 1], "cherry": [0.8, 0.6]})
    inst = Instance(
        "q1", "q", (Passage("p", "pos text"),), (Passage("a", "apple"), Passage("b", "banana"), Passage("c", "cherry"))
    )
    return inst, emb


def test_within_list_features_by_hand():
    inst, emb = _instance()
    t = compute_features([inst], embedder=emb)
    assert t.names == FEATURES
    col = {f: t.column(f) for f in ("s_qc_z", "s_pc_z", "bm25_z", "pos_standing", "bm25")}
    sd_qc = np.sqrt((0.4**2 + 0.6**2 + 0.2**2) / 3)  # mean of (1, 0, 0.8) is 0.6
    assert col["s_qc_z"] == pytest.approx([0.4 / sd_qc, -0.6 / sd_qc, 0.2 / sd_qc])
    m_pc = (0.6 + 0.8 + 0.96) / 3
    sd_pc = np.sqrt(((0.6 - m_pc) ** 2 + (0.8 - m_pc) ** 2 + (0.96 - m_pc) ** 2) / 3)
    assert col["s_pc_z"] == pytest.approx([(v - m_pc) / sd_pc for v in (0.6, 0.8, 0.96)])
    assert col["pos_standing"].tolist() == pytest.approx([2 / 3] * 3)  # a and c score above the positive
    assert col["bm25_z"] == pytest.approx(within_z(col["bm25"]))  # no query word in any text: all zero
    assert (col["bm25_z"] == 0).all()


def test_within_list_features_do_not_depend_on_which_candidates_are_judged():
    inst, emb = _instance()
    full = compute_features([inst], embedder=emb)
    one = compute_features([inst], candidates=[(2,)], embedder=emb)
    for f in ("s_qc_z", "s_pc_z", "bm25_z", "pos_standing"):
        assert one.column(f)[0] == pytest.approx(full.column(f)[2]), f


def test_within_z_of_a_constant_list_is_zero():
    assert within_z(np.array([0.3, 0.3, 0.3])).tolist() == [0.0, 0.0, 0.0]
    assert within_z(np.array([1.0, 3.0])).tolist() == [-1.0, 1.0]


def test_the_packaged_default_screen_loads_and_its_fingerprint_follows_its_bytes(tmp_path):
    from negclean.judge.config import LearnedJudgeConfig, _learned_identity
    from negclean.learned.model import LearnedModel, resolve_model_path

    path = resolve_model_path("default")
    assert path.name == "default-screen.json" and path.is_file()
    model = LearnedModel.load("default")
    assert set(model.features) <= set(FEATURES) and "retriever_score" not in model.features
    assert 0.0 < model.threshold < 1.0 and model.embedder == "all-MiniLM-L6-v2"
    cfg = LearnedJudgeConfig()  # path defaults to the packaged screen
    assert cfg.path == "default" and cfg.judge_id() == "learned:default-screen.json"
    assert _learned_identity(cfg) == hashlib.sha256(path.read_bytes()).hexdigest()
    copy = tmp_path / "copy.json"
    shutil.copyfile(path, copy)
    a = LearnedJudgeConfig(path=str(copy)).fingerprint()
    data = json.loads(copy.read_text())
    data["threshold"] = 0.5
    copy.write_text(json.dumps(data))
    assert LearnedJudgeConfig(path=str(copy)).fingerprint() != a


def test_package_data_includes_the_model():
    text = (REPO / "pyproject.toml").read_text()
    assert '"learned/*.json"' in text


def test_presets_validate():
    from negclean.cascade.stages import CascadeConfig
    from negclean.presets import load_cascade_dict

    for name in ("screen", "offline"):
        cfg = CascadeConfig.model_validate(load_cascade_dict(name))
        screen = next(s for s in cfg.stages if s.name == "screen")
        assert screen.judge.backend == "learned" and screen.judge.path == "default"
        assert cfg.max_false_negatives is None
    offline = CascadeConfig.model_validate(load_cascade_dict("offline"))
    screen = next(s for s in offline.stages if s.name == "screen")
    assert screen.uncertain is not None and screen.escalate == "none" and screen.audit_rate > 0
    assert offline.stages[-1].judge.backend == "llamacpp"


def test_screen_preset_runs_on_the_example(tmp_path):
    """The screen preset on the shipped example: every non-duplicate candidate gets the learned screen's calibrated
    probability, flags are exactly those at or above the model's threshold, and nothing is dropped by a cap."""
    from negclean.cascade.stages import CascadeConfig
    from negclean.learned.model import LearnedModel
    from negclean.pipeline import run_judge
    from negclean.presets import load_cascade_dict

    threshold = LearnedModel.load("default").threshold
    summary = run_judge(
        input_path=str(EXAMPLE),
        cascade=CascadeConfig.model_validate(load_cascade_dict("screen")),
        output_dir=tmp_path / "run",
    )
    rows = [json.loads(line) for line in (tmp_path / "run" / "verdicts.jsonl").read_text().splitlines()]
    assert rows and not any(r["ambiguous"] for r in rows)
    n_screen = flagged = 0
    for r in rows:
        for c in r["candidates"]:
            if c["stage"] != "screen":
                continue
            n_screen += 1
            v = c  # the final verdict's fields sit on the candidate row
            assert 0.0 <= v["confidence"] <= 1.0 and v["judge"] == "learned:default-screen.json"
            assert (v["label"] == "relevant") == (v["confidence"] >= threshold)
            flagged += v["label"] == "relevant"
    screen = next(s for s in summary["cascade"]["stages"] if s["name"] == "screen")
    assert n_screen == screen["candidates"] > 0 and flagged == screen["relevant"]
    assert 0 < flagged < n_screen  # it separates: neither everything nor nothing
