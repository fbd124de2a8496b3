"""The shipped sets of systems for `negclean bench-judges --systems NAME` (or give a YAML file).

A system is a cascade (``stages`` as in a cascade YAML) with a name; ``relative_to`` names the system
whose recall it is compared with (the strong stage run on everything). Similarity screens use a wide
confidence band (0.5..1.2) so that their confidence ranks candidates (AUC) instead of clipping.
"""

from __future__ import annotations

from negclean.benchjudges.run import System

_DUP = {"backend": "duplicate"}


def _sim(ratio: float) -> dict:
    return {"backend": "similarity", "model": "all-MiniLM-L6-v2", "ratio": ratio, "band": [0.5, 1.2]}


_POINT = {"backend": "llamacpp", "mode": "pointwise"}
_LIST = {"backend": "llamacpp", "mode": "listwise"}


def _one(name: str, judge: dict) -> System:
    return System(name, {"stages": [{"name": "s1", "judge": judge}]})


def cheap() -> list[System]:
    """Model-free and embedding judges: fast enough for the whole benchmark."""
    return [
        _one("duplicate", _DUP),
        _one("similarity@0.8", _sim(0.8)),
        _one("similarity@0.9", _sim(0.9)),
        _one("similarity@0.95", _sim(0.95)),
        System(
            "duplicate>similarity@0.9",
            {"stages": [{"name": "dup", "judge": _DUP, "escalate": "cleared"}, {"name": "sim", "judge": _sim(0.9)}]},
        ),
    ]


def llm() -> list[System]:
    """Cheap judges, the local Qwen 1.5B judge (pointwise and listwise) and two-stage cascades of them.

    The cascades use the pointwise judge as their strong stage: its verdicts on the screened candidates
    are those it gives when run on everything (one call per candidate), so they come from the store. A
    listwise strong stage would make new calls on each screened subset (add it in a YAML to measure it)."""
    screen = {"name": "screen", "judge": _sim(0.8), "escalate": "flagged"}
    return [
        *cheap()[:4],
        _one("qwen1.5b-pointwise", _POINT),
        _one("qwen1.5b-listwise", _LIST),
        System(
            "sim@0.8>pointwise",
            {"stages": [screen, {"name": "llm", "judge": _POINT}]},
            relative_to="qwen1.5b-pointwise",
        ),
        System(
            "sim@0.8+band+audit>pointwise",
            {
                "seed": 0,
                "stages": [{**screen, "uncertain": [0.3, 0.6], "audit_rate": 0.1}, {"name": "llm", "judge": _POINT}],
            },
            relative_to="qwen1.5b-pointwise",
        ),
    ]


def _raw(threshold: float | str) -> dict:
    # band over the whole cosine range: the confidence ranks candidates by s(q,c) itself, never clipped
    return {
        "backend": "similarity",
        "model": "all-MiniLM-L6-v2",
        "score": "raw",
        "threshold": threshold,
        "band": [-1.0, 1.0],
    }


def sparse() -> list[System]:
    """For `--sparse` runs over several data sets (no LLM): the old default screen, raw s(q,c) screens at fixed
    thresholds and calibrated on the other sets, the ratio calibrated on the other sets, and the learned judge
    fitted on the other sets (``lodo``: see ``benchjudges.lodo``)."""
    lodo_ratio = {**_sim(0.95), "ratio": "lodo"}
    return [
        _one("duplicate", _DUP),
        _one("similarity@0.95", _sim(0.95)),
        _one("raw s(q,c)>0.5", _raw(0.5)),
        _one("raw s(q,c)>0.6", _raw(0.6)),
        System("similarity@lodo-R0.8", {"target_recall": 0.8, "stages": [{"name": "s1", "judge": lodo_ratio}]}),
        System("raw s(q,c)@lodo-R0.8", {"target_recall": 0.8, "stages": [{"name": "s1", "judge": _raw("lodo")}]}),
        _one("learned@lodo", {"backend": "learned", "path": "lodo"}),
    ]


SHIPPED = {"cheap": cheap, "llm": llm, "sparse": sparse}
