"""Check a composed Hydra config before anything heavy starts.

Every node with a ``_target_`` is checked against what it will construct: a dataclass target
(model configs) is merged into its structured schema, so unknown keys and wrong types fail with
OmegaConf's messages; a class or function target has its keys checked against its signature and
the values against simple annotations (int, float, bool, str, lists, dicts, Optional, Literal).
Errors name the full key, e.g. ``task.lr``. Keys supplied at build time (``runtime_keys``, such as
a task's ``model`` or ``num_speakers``) may be absent from the config.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Iterable
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config value that would fail later; the message names the key."""


ROOT_KEYS = {
    "experiment_name", "seed", "resume", "run_root", "run_dir", "model", "data", "task", "trainer", "logger",
    "callbacks", "checkpoint", "languages", "matmul_precision",
}


def validate_config(cfg: DictConfig, runtime_keys: dict[str, Iterable[str]] | None = None) -> None:
    """Raise ``ConfigError`` for the first unknown key or mistyped value anywhere in ``cfg``."""
    runtime_keys = {k: set(v) for k, v in (runtime_keys or {}).items()}
    unknown = set(cfg.keys()) - ROOT_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(ROOT_KEYS)}")
    if cfg.get("resume") not in (None, "auto") and not str(cfg.resume).endswith(".ckpt"):
        raise ConfigError(f"resume: expected null, 'auto' or a path to a .ckpt file, got {cfg.resume!r}")
    missing = missing_keys(cfg)
    if missing:
        raise ConfigError(f"mandatory value(s) not set: {', '.join(missing)} (marked ??? in the config; "
                          f"set e.g. {missing[0]}=...)")
    _walk(cfg, "", runtime_keys)


def missing_keys(cfg: DictConfig | ListConfig) -> list[str]:
    """The full keys of the mandatory (``???``) values, sorted. Unlike ``OmegaConf.missing_keys`` it resolves no
    interpolation, so a value that points at a missing one (``data.tokenizer: ${task.init_from}``) does not raise."""
    found: list[str] = []

    def gather(node: DictConfig | ListConfig) -> None:
        for key in range(len(node)) if isinstance(node, ListConfig) else node.keys():
            child = node._get_node(key)
            if child._is_missing():
                found.append(node._get_full_key(key))
            elif isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation() \
                    and not child._is_none():
                gather(child)

    gather(cfg)
    return sorted(found)


def _walk(node: Any, path: str, runtime_keys: dict[str, set[str]]) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            _check_target(node, path, runtime_keys.get(path, set()))
        for key in node.keys():
            if key == "_target_":
                continue
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)):
                _walk(child, f"{path}.{key}" if path else str(key), runtime_keys)
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node):
            if isinstance(child, (DictConfig, ListConfig)):
                _walk(child, f"{path}[{i}]", runtime_keys)


def _check_target(node: DictConfig, path: str, runtime: set[str]) -> None:
    where = path or "<root>"
    try:
        target = get_object(node._target_)
    except Exception as err:
        raise ConfigError(f"{where}._target_: cannot import {node._target_!r} ({err})") from err
    keys = [k for k in node.keys() if not str(k).startswith("_")]
    if dataclasses.is_dataclass(target):
        schema = OmegaConf.structured(target)
        given = OmegaConf.create({k: node._get_node(k) for k in keys})
        try:
            OmegaConf.merge(schema, given)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{where}.{err.full_key}: {err.msg}") from err
        try:
            target(**OmegaConf.to_container(OmegaConf.merge(schema, given), resolve=True))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from err
        return
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    params = signature.parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    hints = _hints(target, f"{where} ({node._target_})")
    for key in keys:
        if key not in params:
            if takes_kwargs:
                continue
            accepted = [p for p in params if params[p].kind not in (params[p].VAR_POSITIONAL, params[p].VAR_KEYWORD)]
            raise ConfigError(f"{where}.{key}: unknown key for {node._target_}; accepted: {accepted}")
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and "_target_" in (
            child if isinstance(child, DictConfig) else {}
        ):
            continue
        if OmegaConf.is_missing(node, key):
            continue
        try:
            value = OmegaConf.to_container(child, resolve=True) if isinstance(child, (DictConfig, ListConfig)) \
                else node[key]
        except OmegaConfBaseException:
            continue  # interpolations filled at run time (e.g. ${run_dir})
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"{where}.{key}: expected {_type_name(hints[key])}, got {value!r}")
    for name, p in params.items():
        required = p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and name not in keys and name not in runtime and name != "self":
            raise ConfigError(f"{where}.{name}: required by {node._target_} but not set")


def _hints(target: Any, label: str) -> dict[str, Any]:
    """The target's parameter annotations, resolved. One that cannot be resolved is a ConfigError naming the target,
    the parameter and the error, except a NameError in a module that imports names under ``if TYPE_CHECKING:``
    (names for type checkers only, e.g. lightning's WandbLogger ``Run``): that parameter's values go unchecked."""
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - some annotation does not resolve: find which, one by one
        return _hints_one_by_one(fn, label)


def _hints_one_by_one(fn: Any, label: str) -> dict[str, Any]:
    globalns = getattr(inspect.unwrap(fn), "__globals__", {})
    hints = {}
    for param, annotation in getattr(fn, "__annotations__", {}).items():
        if param == "return":
            continue
        try:
            hints[param] = eval(annotation, globalns) if isinstance(annotation, str) else annotation  # noqa: S307
        except Exception as err:
            if isinstance(err, NameError) and "TYPE_CHECKING" in globalns:
                continue
            raise ConfigError(f"{label}: cannot resolve the annotation {annotation!r} of {param!r} "
                              f"({type(err).__name__}: {err})") from err
    return hints


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args and (origin is not tuple or len(args) == 2 and args[1] is Ellipsis) else None
        return inner is None or all(_matches(v, inner) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # other annotations (classes, callables) are checked by the constructor itself


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
