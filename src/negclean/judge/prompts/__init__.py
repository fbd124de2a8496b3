"""Prompt templates shipped as package data, rendered with Jinja2.

Each template defines two macros, ``system()`` and ``user(query, positives, candidates)``. Passage
text goes through the ``passage`` filter, which neutralises the tags the verdict structure uses so
that a passage cannot forge a document boundary or a verdict.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from negclean.data.records import Passage

_TAGS = re.compile(r"<\s*(/?)\s*(doc|verdict|ground_truth|reasoning)\b", re.IGNORECASE)
# look-alikes of chat-template control tokens (ChatML/Qwen <|im_start|>, Llama 3 <|eot_id|>, Gemma
# <start_of_turn>, Llama 2/Mistral [INST] and </s>): local backends tokenize passages as plain text, but a
# small model still reads the look-alike as a turn boundary (benchmarks/RESULTS-injection.md)
_CONTROL = re.compile(
    r"<(\|)(?=[^\s|<>]{1,40}\|>)|<\s*(/?)\s*(start_of_turn|end_of_turn|s)\s*>|\[(/?)INST\]", re.IGNORECASE
)
_MAX_CHARS = 6000  # per passage; longer texts are cut (and the cut is marked) to bound prompt size


def neutralize(text: str) -> str:
    """Replace ``<doc``, ``</verdict`` and similar, and chat-template control-token look-alikes
    (``<|im_start|>``, ``<end_of_turn>``, ``[INST]``), with look-alikes that are neither."""
    text = _TAGS.sub(lambda m: "\u2039" + m.group(1) + m.group(2), text)
    return _CONTROL.sub(_defuse, text)


def _defuse(m: re.Match[str]) -> str:
    if m.group(1):  # <|name|>  ->  ‹|name|>
        return "\u2039|"
    if m.group(3):  # <start_of_turn>, </s>  ->  ‹start_of_turn›
        return "\u2039" + m.group(2) + m.group(3) + "\u203a"
    return "\u27e6" + m.group(4) + "INST\u27e7"  # [INST]  ->  ⟦INST⟧


def _passage(p: Passage, include_title: bool) -> str:
    text = p.text if len(p.text) <= _MAX_CHARS else p.text[:_MAX_CHARS] + " [...]"
    if include_title and p.title:
        text = f"{p.title}\n{text}"
    return neutralize(text)


def template_source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.j2").read_text(encoding="utf-8")


@cache
def template_hash(name: str) -> str:
    """sha256 of the template file: part of every judge fingerprint that uses it."""
    # the neutralising rules change what a prompt holds, so they are part of its hash
    rules = _TAGS.pattern + _CONTROL.pattern
    return hashlib.sha256((template_source(name) + rules).encode()).hexdigest()[:16]


@cache
def _environment(include_titles: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda n: template_source(n)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["passage"] = lambda p: _passage(p, include_titles)
    env.filters["data"] = lambda s: neutralize(str(s))
    return env


def render(
    name: str, *, query: str, positives: Sequence[Passage], candidates: Sequence[Passage], include_titles: bool = False
) -> tuple[str, str]:
    """Return (system, user) messages of template ``name``."""
    # the template's macros are attributes of its module, which jinja2 cannot type
    module: Any = _environment(include_titles).get_template(name).module
    return str(module.system()).strip(), str(module.user(query, list(positives), list(candidates))).strip()
