"""Warnings on otherwise valid instances, including the fast path of the duplicate-text check."""

from __future__ import annotations

import random

import pytest

from negclean.data.formats._checks import check_instance
from negclean.data.hashing import normalize_text
from negclean.data.records import Instance, Passage


def make(pos: list[str], neg: list[str], *, query: str = "q") -> Instance:
    return Instance(
        "q",
        query,
        tuple(Passage(f"p{i}", t) for i, t in enumerate(pos)),
        tuple(Passage(f"n{i}", t) for i, t in enumerate(neg)),
    )


def kinds(inst: Instance) -> list[str]:
    return [k for k, _ in check_instance(inst)]


def test_clean_instance_has_no_warnings():
    assert check_instance(make(["the answer"], ["something else", "another"])) == []


def test_each_kind():
    assert kinds(make(["a"], [])) == ["empty_negatives"]
    assert kinds(make(["a"], ["b"], query=" \t")) == ["empty_query"]
    assert kinds(make(["a"], ["", "b"])) == ["empty_text"]
    assert kinds(make(["The a"], [" the  A\n"])) == ["negative_equals_positive"]
    dup = Instance("q", "q", (Passage("p", "a"),), (Passage("n", "b"), Passage("n", "c")))
    assert kinds(dup) == ["duplicate_docid"]
    same_id = Instance("q", "q", (Passage("p", "a"),), (Passage("p", "zzz"),))
    ((kind, message),) = check_instance(same_id)
    assert kind == "negative_equals_positive" and "docid of positive 1" in message


UNICODE = ["a", "B", "é", "É", "ﬁ", "fi", "Ａ", " ", "  ", "\t", "\n", "\x1c", "\u00a0", "\u3000", "ß", "SS", "x"]
ASCII = ["a", "A", "b", "B", " ", "  ", "\t", "\n", "\r", "\x0b", "\x1c", "\x1f", "ab", "x"]


def _random_text(rng: random.Random, alphabet: list[str]) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))


@pytest.mark.parametrize("alphabet", [UNICODE, ASCII], ids=["unicode", "ascii"])
def test_fast_path_agrees_with_full_normalisation(alphabet):
    """The first-word filter for ASCII texts must never hide a normalised duplicate."""
    rng = random.Random(7)
    found = 0
    for _ in range(3000):
        pos = [_random_text(rng, alphabet) for _ in range(rng.randint(1, 2))]
        neg = [_random_text(rng, alphabet) for _ in range(rng.randint(1, 4))]
        pos_norm = {normalize_text(t) for t in pos}
        expected = sum(1 for t in neg if normalize_text(t) and normalize_text(t) in pos_norm)
        got = kinds(make(pos, neg)).count("negative_equals_positive")
        assert got == expected, (pos, neg)
        found += expected
    assert found > 100  # the random texts do produce duplicates, so the comparison means something


def test_ascii_fast_path_on_long_texts():
    text = "Manhattan Project The Manhattan Project was a research and development project"
    assert kinds(make([text], [text.upper(), "  " + text.replace(" ", "\t "), "Other " + text])) == [
        "negative_equals_positive",
        "negative_equals_positive",
    ]


def test_shortcut_for_quiet_instances_gives_the_full_checks() -> None:
    """check_instance skips the full checks only for instances it proves draw no warning: on instances built to
    hit every case (equal texts up to case and spacing, shared first words, blank starts, non-ASCII, repeated
    and shared docids), it returns exactly what the full checks return."""
    import random

    from negclean.data.formats._checks import _quiet, all_checks, check_instance
    from negclean.data.records import Instance, Passage

    rng = random.Random(3)
    texts = [
        "Leg arm",
        "leg  arm",
        "LEG ARM ",
        "leg armour",
        "Leg",
        "legs arm",
        " leg arm",
        "\tLeg arm",
        "",
        "   ",
        "Ｌeg arm",
        "ﬁne day",
        "fine day",
        "Fine Day",
        "x" * 20 + " y",
        "X" * 20 + "  Y",
        "é leg",
    ]
    quiet = noisy = 0
    for q in range(3000):

        def passages(n: int, side: str) -> tuple[Passage, ...]:
            return tuple(
                Passage(rng.choice([f"{side}{k}", f"{side}{k}", "d0", "p0"]), rng.choice(texts)) for k in range(n)
            )

        inst = Instance(
            str(q),
            rng.choice(["q?", "", " "]) if rng.random() < 0.1 else "q?",
            passages(rng.randint(1, 2), "p"),
            passages(rng.randint(0, 4), "n"),
        )
        expected = all_checks(inst)
        assert check_instance(inst) == expected, inst
        if _quiet(inst):
            quiet += 1
        elif expected:
            noisy += 1
    assert quiet > 50 and noisy > 100  # both ways taken


def test_table_rows_columns_in_first_seen_order() -> None:
    """Rows as a list of dicts: the columns are every row's keys in first-seen order (a name once used for a
    tuple in the DataFrame branch and a dict here; the branches never mix, checked on both)."""
    from negclean.data.tables import table_rows

    rows, columns = table_rows([{"b": 1, "a": 2}, {"a": 3, "c": 4}], "rows")
    assert rows == [{"b": 1, "a": 2}, {"a": 3, "c": 4}] and columns == ("b", "a", "c")
    pd = pytest.importorskip("pandas")
    frame_rows, frame_columns = table_rows(pd.DataFrame({"x": [1, 2], "y": ["u", "v"]}), "dataframe")
    assert frame_columns == ("x", "y") and frame_rows == [{"x": 1, "y": "u"}, {"x": 2, "y": "v"}]
