"""Turn token counts into money with a price table (USD per million tokens), shipped and overridable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from negclean.judge.registry import config_class


@dataclass(frozen=True, slots=True)
class Price:
    input_per_m: float
    output_per_m: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_m + tokens_out * self.output_per_m) / 1e6


FREE = Price(0.0, 0.0)


@lru_cache(maxsize=1)
def default_prices() -> dict[str, Price]:
    data = yaml.safe_load(resources.files("negclean.judge").joinpath("prices.yaml").read_text())
    return {model: Price(float(p["input"]), float(p["output"])) for model, p in data["models"].items()}


def price_for(
    backend: str,
    model: str | None,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
    *,
    billed: bool | None = None,
    factor: float | None = None,
) -> Price:
    """Price of a model: overrides first, then the shipped table; backends that are not billed are free.

    Whether the backend is billed and at what fraction of the online price (a Batch API: 50%) is what its
    config class declares (``billed``, ``price_factor``; ``negclean.judge.registry``), unless given. Prices in
    the table and under ``prices:`` are online prices; the factor is applied on top.

    An unknown hosted model is priced as unknown (None cost) by the caller: here it raises KeyError
    with a message saying how to add it.
    """
    if billed is None or factor is None:
        cls = config_class(backend)
        billed = cls.billed if billed is None else billed
        factor = cls.price_factor if factor is None else factor
    if not billed:
        return FREE
    if overrides and model is not None and model in overrides:
        p = overrides[model]
        return Price(float(p["input"]) * factor, float(p["output"]) * factor)
    table = default_prices()
    found = table.get(model)  # type: ignore[arg-type]
    for name, price in table.items():  # dated snapshots: gpt-4o-mini-2024-07-18 -> gpt-4o-mini
        if found is None and model and model.startswith(name + "-"):
            found = price
    if found is not None:
        return Price(found.input_per_m * factor, found.output_per_m * factor)
    raise KeyError(
        f"no price for model '{model}': add it under 'prices:' in the config "
        f"(USD per million tokens, e.g. {{'{model}': {{'input': 0.15, 'output': 0.6}}}}) "
        f"or set both to 0 for a self-hosted model"
    )
