"""Strict parsing of judge output. Anything that is not a clean, complete verdict is a ParseFailure,
which the caller turns into "undecided" with the failure's reason (never into "not relevant")."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ParseFailure(ValueError):
    """The output holds no usable verdict; ``str(exc)`` is the reason recorded with 'undecided'."""


@dataclass(frozen=True, slots=True)
class ListwiseVerdict:
    """Candidate numbers (1-based, as shown to the model) in each list."""

    better: tuple[int, ...]
    worse: tuple[int, ...]


_VERDICT = re.compile(r"<verdict>(.*?)</verdict>", re.DOTALL | re.IGNORECASE)
_OPEN_VERDICT = re.compile(r"<verdict>", re.IGNORECASE)


def _check_numbers(name: str, values: object, n: int) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise ParseFailure(f"'{name}' is not a list")
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ParseFailure(f"'{name}' holds {v!r}, not a candidate number")
        if not 1 <= v <= n:
            raise ParseFailure(f"'{name}' names candidate {v}, outside 1..{n}")
        if v in out:
            raise ParseFailure(f"'{name}' names candidate {v} twice")
        out.append(v)
    return tuple(out)


def _check_lists(better: tuple[int, ...], worse: tuple[int, ...]) -> ListwiseVerdict:
    both = sorted(set(better) & set(worse))
    if both:
        raise ParseFailure(f"candidate(s) {both} are in both 'better' and 'worse'")
    return ListwiseVerdict(better, worse)


def _check_finish(finish_reason: str | None) -> None:
    if finish_reason == "length":
        raise ParseFailure("output was truncated (finish_reason=length); raise max_tokens")
    if finish_reason not in (None, "stop", "eos"):
        raise ParseFailure(f"generation ended abnormally (finish_reason={finish_reason})")


def parse_listwise(text: str, n: int, *, finish_reason: str | None = "stop") -> ListwiseVerdict:
    """Parse negclean's listwise format: one ``<verdict>{"better": [...], "worse": [...]}</verdict>``.

    Args:
        text: the model's whole output.
        n: number of candidates shown (valid numbers are 1..n).
        finish_reason: from the API; ``length`` means truncated, which is never a verdict.
    """
    _check_finish(finish_reason)
    if text is None or not text.strip():
        raise ParseFailure("empty output")
    blocks = _VERDICT.findall(text)
    if not blocks:
        if _OPEN_VERDICT.search(text):
            raise ParseFailure("verdict block is not closed (truncated output?)")
        raise ParseFailure("no <verdict> block in the output")
    if len(blocks) > 1:
        raise ParseFailure(f"{len(blocks)} verdict blocks in the output; expected exactly one")
    body = blocks[0].strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ParseFailure(f"verdict is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, dict):
        raise ParseFailure("verdict is not a JSON object")
    unknown = set(data) - {"better", "worse"}
    if unknown:
        raise ParseFailure(f"verdict has unexpected keys {sorted(unknown)}")
    if "better" not in data or "worse" not in data:
        raise ParseFailure("verdict lacks the 'better' or the 'worse' list")
    return _check_lists(_check_numbers("better", data["better"], n), _check_numbers("worse", data["worse"], n))


# RLHN reference format: <verdict> <better> ...: [Doc (21)] </better>, <worse> ...: [Doc (18), Doc (22)] </worse> </verdict>
_RLHN_LIST = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL | re.IGNORECASE) for name in ("better", "worse")}
_DOC_REF = re.compile(r"Doc\s*\(\s*(\d+)\s*\)", re.IGNORECASE)
_BRACKETS = re.compile(r"\[(.*?)\]", re.DOTALL)


def parse_rlhn(text: str, n: int, *, finish_reason: str | None = "stop") -> ListwiseVerdict:
    """Parse the RLHN reference code's tag format (``Doc (i)`` references in bracketed lists).

    Used to import and audit outputs made by the RLHN scripts; as strict as ``parse_listwise``.
    """
    _check_finish(finish_reason)
    blocks = _VERDICT.findall(text or "")
    if len(blocks) != 1:
        raise ParseFailure("no <verdict> block" if not blocks else f"{len(blocks)} verdict blocks")
    lists: dict[str, tuple[int, ...]] = {}
    for name, pattern in _RLHN_LIST.items():
        found = pattern.findall(blocks[0])
        if len(found) != 1:
            raise ParseFailure(f"expected one <{name}> list in the verdict, found {len(found)}")
        bracket = _BRACKETS.findall(found[0])
        if len(bracket) != 1:
            raise ParseFailure(f"<{name}> holds no single [...] list")
        items = [s.strip() for s in bracket[0].split(",") if s.strip()]
        numbers = []
        for item in items:
            m = _DOC_REF.fullmatch(item)
            if not m:
                raise ParseFailure(f"<{name}> holds {item!r}, not a 'Doc (i)' reference")
            numbers.append(int(m.group(1)))
        lists[name] = _check_numbers(name, numbers, n)
    return _check_lists(lists["better"], lists["worse"])


_YES = {"yes", "y", "true", "relevant"}
_NO = {"no", "n", "false", "not relevant", "irrelevant"}


def parse_yes_no(text: str, *, finish_reason: str | None = "stop") -> bool:
    """A pointwise answer: True for yes, False for no; anything else is a ParseFailure."""
    if finish_reason not in (None, "stop", "eos", "length"):
        raise ParseFailure(f"generation ended abnormally (finish_reason={finish_reason})")
    word = re.sub(r"[^a-z ]", "", (text or "").strip().lower()).strip()
    if word in _YES:
        return True
    if word in _NO:
        return False
    first = word.split(" ", 1)[0] if word else ""
    if first in ("yes", "no"):
        return first == "yes"
    raise ParseFailure(f"answer {text[:40]!r} is neither yes nor no")


def p_yes_from_logprobs(top: Mapping[str, float] | Sequence[tuple[str, float]]) -> float:
    """P(yes) renormalised over yes/no from the first token's top log-probs.

    Tokens are matched case-insensitively after stripping white space ("Yes", " yes"); their
    probabilities are summed. Raises ParseFailure when neither yes nor no is among the top tokens.
    """
    items = top.items() if isinstance(top, Mapping) else top
    p_yes = p_no = 0.0
    for token, logprob in items:
        t = token.strip().lower()
        if t == "yes":
            p_yes += math.exp(logprob)
        elif t == "no":
            p_no += math.exp(logprob)
    if p_yes + p_no == 0.0:
        raise ParseFailure("neither 'yes' nor 'no' among the first token's top log-probs")
    return p_yes / (p_yes + p_no)
