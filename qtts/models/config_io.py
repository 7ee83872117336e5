"""``JsonConfig``: the one way a config dataclass reads and writes a ``config.json`` dict (model folder,
speech tokenizer, and every sub-config of them) without losing or adding anything.

Released files carry keys no model code reads (``architectures``, ``torch_dtype``, ``position_id_per_seconds``,
…) and sometimes omit keys (qwen-tts then uses its class defaults). ``JsonConfig.from_dict`` keeps the
unknown keys in ``extra`` and remembers which known keys the file had; ``to_dict`` writes those keys,
any field changed since, and the unknown keys, so ``from_dict(d).to_dict() == d``. A config built in
code (not read from a file) writes every field.

A class tunes the protocol with class attributes, never with its own ``from_dict`` / ``to_dict``:

- ``FILE_DEFAULTS``: the value a key has when a file omits it, where that differs from the field's
  default (our defaults are the released values, qwen-tts's class defaults are not): a file is read as
  qwen-tts reads it.
- ``NESTED``: fields holding a sub-config (a ``JsonConfig`` class); their dicts are read and written by it.
- ``FILE_KEYS``: a field the files spell differently (``{"frame_rate": "_frame_rate"}``, as transformers
  writes Mimi's): read under either spelling (both at once is an error), written under the file's.
- ``COMPLETE_FILES``: True for a class whose omitted keys do not mean to qwen-tts what they mean to us
  (we read them as the released values, qwen-tts as its different class defaults, and no ``FILE_DEFAULTS``
  says otherwise): ``to_dict`` then writes every field, the keys a file omitted included, so what we write
  means the same to both. ``from_dict(d).to_dict() == d`` holds for complete files (every released one).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class JsonConfig:
    """Mixin for a config dataclass. Unknown keys go to its ``extra: dict`` field, or, for a class without
    one, to a private attribute; sub-configs named in ``NESTED`` are converted too."""

    FILE_DEFAULTS: ClassVar[dict[str, Any]] = {}
    NESTED: ClassVar[dict[str, type[JsonConfig]]] = {}  # field name → JsonConfig class of a sub-config
    FILE_KEYS: ClassVar[dict[str, str]] = {}  # field name → the key files write it under
    COMPLETE_FILES: ClassVar[bool] = False  # True: to_dict writes every field, omitted keys included

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """From a ``config.json`` dict (or a sub-dict of one): unknown keys go to ``extra``, omitted keys
        take ``FILE_DEFAULTS`` (else the field default), sub-configs of ``NESTED`` are read by their class."""
        if not isinstance(values, dict):
            raise ValueError(f"{cls.__name__}: expected a dict, got {type(values).__name__}")
        values = dict(values)
        for name, key in cls.FILE_KEYS.items():
            if key in values:
                if name in values:
                    raise ValueError(f"{cls.__name__}: the dict has both {name!r} and {key!r} (one key)")
                values[name] = values.pop(key)
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
        """The dict to write: the keys read (or every field, see ``COMPLETE_FILES``), fields changed since,
        unknown keys; sub-configs as dicts, under the files' spelling (``FILE_KEYS``)."""
        source = None if self.COMPLETE_FILES else getattr(self, "_source", None)
        loaded = getattr(self, "_loaded", {})
        values = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = _plain(getattr(self, f.name))
            if source is None or f.name in source or value != loaded.get(f.name, object()):
                values[self.FILE_KEYS.get(f.name, f.name)] = value
        return {**values, **getattr(self, "extra", getattr(self, "_extra", {}))}


def _plain(value: Any) -> Any:
    """A JSON-ready copy: sub-configs as dicts, tuples as lists."""
    if isinstance(value, JsonConfig):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON ``true`` is no size)."""
    return isinstance(value, int) and not isinstance(value, bool)
