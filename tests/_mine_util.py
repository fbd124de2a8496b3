"""Helpers for the mining tests: tiny BEIR folders and deterministic embedders."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from negclean.data.hashing import normalize_text


def write_beir(
    root: Path,
    docs: dict[str, tuple[str, str]],
    queries: dict[str, str],
    qrels: list[tuple[str, str, int]],
    *,
    split: str = "train",
) -> Path:
    """Write a BEIR folder: docs {id: (title, text)}, queries {id: text}, qrels [(qid, docid, grade)]."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for docid, (title, text) in docs.items():
            fh.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "qrels" / f"{split}.tsv").open("w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, docid, grade in qrels:
            fh.write(f"{qid}\t{docid}\t{grade}\n")
    return root


class HashEmbedder:
    """Bag of hashed words, L2-normalised: cosine ~ word overlap. Deterministic and instant."""

    identity = "test/hash-embedder-v1"
    dim = 512

    def __init__(self):
        self.calls: list[int] = []

    def encode(self, texts, *, prefix: str = "", batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in normalize_text(prefix + text).split():
                out[i, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


class TableEmbedder:
    """Fixed vectors per text (keys are the exact strings encoded), for exact, even negative, scores."""

    identity = "test/table-embedder"

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = {k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in table.items()}
        self.dim = len(next(iter(self.table.values())))
        self.calls: list[int] = []

    def encode(self, texts, *, prefix: str = "", batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        self.calls.append(len(texts))
        return np.stack([self.table[prefix + t] for t in texts]).astype(np.float32)


TOPICS = {
    "astro": "galaxy star orbit telescope planet nebula comet cosmic solar lunar",
    "bio": "cell protein gene enzyme membrane dna tissue neuron virus bacteria",
    "cook": "bread butter oven flour sugar recipe bake dough salt pepper",
    "sport": "football goal match team coach league player score stadium season",
}


def topic_folder(root: Path, *, docs_per_topic: int = 40, seed: int = 0, multi: bool = True) -> Path:
    """A synthetic BEIR folder: 4 topics, docs are random word bags of their topic (plus noise words),
    one query per topic and 3 positives each (when ``multi``), one qrels entry of grade 0."""
    rng = np.random.default_rng(seed)
    docs: dict[str, tuple[str, str]] = {}
    queries: dict[str, str] = {}
    qrels: list[tuple[str, str, int]] = []
    noise = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    for name, vocab in TOPICS.items():
        words = vocab.split()
        for j in range(docs_per_topic):
            k = int(rng.integers(3, 8))
            text = " ".join(rng.choice(words, size=k).tolist() + rng.choice(noise, size=3).tolist())
            docs[f"{name}-{j}"] = ("", text)
        queries[f"q-{name}"] = " ".join(words[:4])
        for j in range(3 if multi else 1):
            qrels.append((f"q-{name}", f"{name}-{j}", 1))
        qrels.append((f"q-{name}", f"{name}-{docs_per_topic - 1}", 0))
    return write_beir(root, docs, queries, qrels)
