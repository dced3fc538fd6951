"""Configuration files of the edge's processes (YAML) read into dataclasses, so that every setting
is named, typed and checked once: an unknown, missing or mistyped setting is refused naming the
file and the setting. Nested dataclasses are sections; paths are relative to the file."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from ctscreen.errors import InputError


def load_settings(path: str | Path, kind: type):
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(path, f"cannot read the configuration ({error})") from None
    return _build(path, kind, document, "")


def _build(path: Path, kind: type, document, where: str):
    if not isinstance(document, dict):
        raise InputError(path, f"{where or 'the configuration'} must be a mapping of settings")
    known = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(document) - set(known))
    if unknown:
        raise InputError(path, f"unknown setting(s) {', '.join(where + u for u in unknown)}; known: {', '.join(known)}")
    missing = sorted(name for name, f in known.items()
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in document)
    if missing:
        raise InputError(path, f"missing setting(s) {', '.join(where + m for m in missing)}")
    hints = typing.get_type_hints(kind)
    values = {name: _value(path, hints[name], value, f"{where}{name}") for name, value in document.items()}
    try:
        return kind(**values)
    except ValueError as error:  # a dataclass's own check of its values (__post_init__)
        raise InputError(path, f"{where.rstrip('.') or 'settings'}: {error}") from None


def _value(path: Path, hint, value, name: str):
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if dataclasses.is_dataclass(hint):
        return _build(path, hint, value, f"{name}.")
    origin = typing.get_origin(hint)
    try:
        if origin in (list, tuple):
            if not isinstance(value, list):
                raise TypeError
            item = typing.get_args(hint)[0]
            items = [_value(path, item, v, f"{name}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if hint is Path:
            return (path.parent / Path(str(value))).resolve()
        if hint is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if hint in (int, float):
            if isinstance(value, bool) or (hint is int and isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return hint(value)
        if hint is str:
            if isinstance(value, (dict, list)) or value is None:
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{name}: {value!r:.60} is not a {getattr(hint, '__name__', hint)}") from None
    return value
