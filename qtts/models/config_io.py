"""Config dataclasses that read and write ``config.json`` dicts without losing or adding anything.

Released files carry keys no model code reads (``architectures``, ``torch_dtype``, ``position_id_per_seconds``,
…) and sometimes omit keys (qwen-tts then uses its class defaults). ``DictConfig.from_dict`` keeps the
unknown keys in ``extra`` and remembers which known keys the file had; ``to_dict`` writes those keys,
any field changed since, and the unknown keys, so ``from_dict(d).to_dict() == d``. A config built in
code (not read from a file) writes every field.

``FILE_DEFAULTS`` names the value a key has when a file omits it, where that differs from the field's
default (our defaults are the released values, qwen-tts's class defaults are not): a file is read as
qwen-tts reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class DictConfig:
    """Mixin for a config dataclass. Unknown keys go to its ``extra: dict`` field, or, for a class without
    one, to a private attribute; sub-configs named in ``NESTED`` are converted too."""

    FILE_DEFAULTS: ClassVar[dict[str, Any]] = {}
    NESTED: ClassVar[dict[str, type]] = {}  # field name → DictConfig class of a sub-config

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        if not isinstance(values, dict):
            raise ValueError(f"{cls.__name__}: expected a dict, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {**cls.FILE_DEFAULTS, **{k: v for k, v in values.items() if k in known}}
        for name, sub in cls.NESTED.items():
            if isinstance(kwargs.get(name), dict):
                kwargs[name] = sub.from_dict(kwargs[name])
        extra = {k: v for k, v in values.items() if k not in known}
        if "extra" in {f.name for f in dataclasses.fields(cls)}:
            config = cls(**kwargs, extra=extra)
        else:
            config = cls(**kwargs)
            object.__setattr__(config, "_extra", extra)
        object.__setattr__(config, "_source", {k: _plain(getattr(config, k)) for k in known if k in values})
        object.__setattr__(config, "_loaded", {k: _plain(getattr(config, k)) for k in known})
        return config

    def to_dict(self) -> dict[str, Any]:
        source = getattr(self, "_source", None)
        loaded = getattr(self, "_loaded", {})
        values = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = _plain(getattr(self, f.name))
            if source is None or f.name in source or value != loaded.get(f.name, object()):
                values[f.name] = value
        return {**values, **getattr(self, "extra", getattr(self, "_extra", {}))}


def _plain(value: Any) -> Any:
    """A JSON-ready copy: sub-configs as dicts, tuples as lists."""
    if isinstance(value, DictConfig):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
