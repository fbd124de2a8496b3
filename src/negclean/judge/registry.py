"""Judge backends by name: the shipped ones, and those other packages register through an entry point.

A package adds a backend by declaring, in its ``pyproject.toml``::

    [project.entry-points."negclean.judges"]
    mybackend = "my_package.config:MyJudgeConfig"

where ``MyJudgeConfig`` subclasses ``negclean.judge.config.JudgeConfigBase`` with a field
``backend: Literal["mybackend"] = "mybackend"`` and its own options (validated by that pydantic model, so
a misspelt option is an error naming it), and builds a ``negclean.judge.base.JudgeBase`` subclass
(``implementation = ("my_package.judge", "MyJudge")`` or its own ``build()``). Once the package is
installed, a cascade YAML uses it as any shipped backend: ``judge: {backend: mybackend, ...}``.

Shipped names win over a plugin that claims one of them. Entry points are read when an unknown name
is asked for, and only the one named is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, Discriminator, SerializeAsAny, Tag

from negclean.errors import ConfigError
from negclean.judge.config import (
    SHIPPED_CONFIGS,
    CrossEncoderJudgeConfig,
    DuplicateJudgeConfig,
    JudgeConfigBase,
    LearnedJudgeConfig,
    LlamaCppJudgeConfig,
    OpenAIBatchJudgeConfig,
    OpenAIJudgeConfig,
    QrelsJudgeConfig,
    SimilarityJudgeConfig,
    VLLMJudgeConfig,
)

log = logging.getLogger(__name__)

#: the entry point group a plugin registers its judge config class under
ENTRY_POINT_GROUP = "negclean.judges"


def _backend_name(cls: type[JudgeConfigBase]) -> str | None:
    """The name a config class answers to: the default of its ``backend`` field."""
    field = cls.model_fields.get("backend")
    if field is None:
        return None
    default = field.default
    if isinstance(default, str):
        return default
    literal = get_args(field.annotation)
    return literal[0] if len(literal) == 1 and isinstance(literal[0], str) else None


SHIPPED: Mapping[str, type[JudgeConfigBase]] = {
    name: cls for cls in SHIPPED_CONFIGS if (name := _backend_name(cls)) is not None
}


def _plugin_entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in SHIPPED:
            log.warning("the judge backend '%s' of %s is ignored: a shipped backend has that name", ep.name, ep.value)
            continue
        found.setdefault(ep.name, ep)
    return found


def plugin_names() -> tuple[str, ...]:
    """Names of the backends installed packages register (their modules are not imported)."""
    return tuple(sorted(_plugin_entry_points()))


def backend_names() -> tuple[str, ...]:
    """Every backend a cascade YAML may name: the shipped ones, then the plugins'."""
    return tuple(SHIPPED) + plugin_names()


@cache
def _load_plugin(name: str, value: str) -> type[JudgeConfigBase]:
    ep = EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
    try:
        obj = ep.load()
    except Exception as exc:  # any error of the plugin's import: say whose it is
        raise ConfigError(
            f"judge backend '{name}': loading {value} (entry point group '{ENTRY_POINT_GROUP}') "
            f"failed: {type(exc).__name__}: {exc}. Fix or reinstall the package that provides "
            "it"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, JudgeConfigBase)):
        raise ConfigError(
            f"judge backend '{name}': {value} is not a judge config class (a subclass of "
            "negclean.judge.config.JudgeConfigBase)"
        )
    declared = _backend_name(obj)
    if declared != name:
        raise ConfigError(
            f"judge backend '{name}': {value} declares backend {declared!r}; its field must be "
            f"backend: Literal[{name!r}] = {name!r}"
        )
    return obj


def config_class(name: str) -> type[JudgeConfigBase]:
    """The config class of backend ``name``: a shipped one, else a plugin's (imported now).

    Raises:
        ConfigError: no backend has this name (the message lists the known ones), or the plugin's class cannot
            be loaded.
    """
    shipped = SHIPPED.get(name)
    if shipped is not None:
        return shipped
    ep = _plugin_entry_points().get(name)
    if ep is None:
        raise ConfigError(
            f"unknown judge backend {name!r}; known backends: {', '.join(backend_names())}. A backend "
            f"from another package registers under the entry point group '{ENTRY_POINT_GROUP}': "
            "install that package in this environment"
        )
    return _load_plugin(ep.name, ep.value)


#: the discriminator's tag of every backend that is not shipped
PLUGIN_TAG = "plugin"


def _tag(value: Any) -> str:
    backend = value.get("backend") if isinstance(value, Mapping) else getattr(value, "backend", None)
    return backend if isinstance(backend, str) and backend in SHIPPED else PLUGIN_TAG


def parse_plugin_config(value: Any) -> JudgeConfigBase:
    """A plugin's judge config from a mapping (YAML) or a config object, validated by the plugin's own model."""
    if isinstance(value, JudgeConfigBase):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"a judge must be a mapping with a 'backend' key, got {type(value).__name__}")
    backend = value.get("backend")
    if not isinstance(backend, str):
        raise ValueError(f"a judge needs 'backend' (one of {', '.join(backend_names())})")
    try:
        cls = config_class(backend)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None  # pydantic adds where in the file it was
    return cls.model_validate(dict(value))


#: a stage's judge: a shipped backend's config (typed, a tagged union on ``backend``) or a registered plugin's,
#: validated by the plugin's own model and dumped whole (so a dumped cascade validates back to the same configs)
AnyJudgeConfig = Annotated[
    Annotated[DuplicateJudgeConfig, Tag("duplicate")]
    | Annotated[SimilarityJudgeConfig, Tag("similarity")]
    | Annotated[QrelsJudgeConfig, Tag("qrels")]
    | Annotated[OpenAIJudgeConfig, Tag("openai")]
    | Annotated[LlamaCppJudgeConfig, Tag("llamacpp")]
    | Annotated[OpenAIBatchJudgeConfig, Tag("openai-batch")]
    | Annotated[VLLMJudgeConfig, Tag("vllm")]
    | Annotated[LearnedJudgeConfig, Tag("learned")]
    | Annotated[CrossEncoderJudgeConfig, Tag("crossencoder")]
    | Annotated[SerializeAsAny[JudgeConfigBase], BeforeValidator(parse_plugin_config), Tag(PLUGIN_TAG)],
    Discriminator(_tag),
]


__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_TAG",
    "SHIPPED",
    "AnyJudgeConfig",
    "backend_names",
    "config_class",
    "parse_plugin_config",
    "plugin_names",
]
