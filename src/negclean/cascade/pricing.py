"""Turn token counts into money with a price table (USD per million tokens), shipped and overridable."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

import yaml


@dataclass(frozen=True, slots=True)
class Price:
    input_per_m: float
    output_per_m: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_m + tokens_out * self.output_per_m) / 1e6


FREE = Price(0.0, 0.0)

#: Backends billed at a fraction of the online price of the same model (OpenAI's and Azure's Batch APIs: 50%).
#: Prices in the table and under ``prices:`` are online prices; the factor is applied on top.
PRICE_FACTORS = {"openai-batch": 0.5}


@lru_cache(maxsize=1)
def default_prices() -> dict[str, Price]:
    data = yaml.safe_load(resources.files("negclean.judge").joinpath("prices.yaml").read_text())
    return {model: Price(float(p["input"]), float(p["output"])) for model, p in data["models"].items()}


def price_for(backend: str, model: str | None, overrides: Mapping[str, Mapping[str, float]] | None = None) -> Price:
    """Price of a model: overrides first, then the shipped table; local backends are free.

    An unknown hosted model is priced as unknown (None cost) by the caller: here it raises KeyError
    with a message saying how to add it.
    """
    if backend in ("duplicate", "similarity", "qrels", "llamacpp", "learned", "vllm", "crossencoder"):
        return FREE
    factor = PRICE_FACTORS.get(backend, 1.0)
    if overrides and model in overrides:
        p = overrides[model]
        return Price(float(p["input"]) * factor, float(p["output"]) * factor)
    table = default_prices()
    found = table.get(model)  # type: ignore[arg-type]
    for name, price in table.items():  # dated snapshots: gpt-4o-mini-2024-07-18 -> gpt-4o-mini
        if found is None and model and model.startswith(name + "-"):
            found = price
    if found is not None:
        return Price(found.input_per_m * factor, found.output_per_m * factor)
    raise KeyError(f"no price for model '{model}': add it under 'prices:' in the config "
                   f"(USD per million tokens, e.g. {{'{model}': {{'input': 0.15, 'output': 0.6}}}}) "
                   f"or set both to 0 for a self-hosted model")
