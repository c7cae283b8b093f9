"""Configuration: typed dataclasses, YAML files in `configs/`, and `a.b=c` command-line overrides.

A config is resolved in three layers, later ones winning: the dataclass defaults (the papers'
values), one or more YAML files, then command-line overrides. The schema is an OmegaConf
structured config, so a wrong type or an unknown key is an error at load time; unknown keys
are reported with the closest valid key. Every run saves the resolved config next to its
outputs (`config.yaml`), and downstream tools re-read it from there.
"""
from __future__ import annotations

import difflib
import json
import typing
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema; the message says how to fix it."""


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            child = node._get_node(k)
            if isinstance(child, DictConfig):
                keys.extend(_all_keys(child, full + "."))
    return keys


def _unknown_key_message(schema: DictConfig, key: str, where: str) -> str:
    valid = _all_keys(schema)
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    siblings = [k for k in valid if k.startswith(parent) and "." not in k[len(parent):]]
    close = difflib.get_close_matches(key, siblings or valid, n=1, cutoff=0.5) or \
        difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(siblings[:20])}"
    return f"unknown config key '{key}' in {where}: {hint}"


def _flat_keys(container: Any, prefix: str = "") -> list[str]:
    """Dotted leaf-and-branch keys of a plain dict/DictConfig (the user's input, not the schema)."""
    out = []
    items = container.items() if isinstance(container, dict) else []
    for k, v in items:
        full = f"{prefix}{k}"
        out.append(full)
        if isinstance(v, dict):
            out.extend(_flat_keys(v, full + "."))
    return out


def _check_keys(schema: DictConfig, layer: DictConfig, where: str) -> None:
    valid = set(_all_keys(schema))
    plain = OmegaConf.to_container(layer, resolve=False)
    for key in _flat_keys(plain):
        parent = key.rsplit(".", 1)[0] if "." in key else None
        if key in valid:
            continue
        # Keys under a free-form dict field (e.g. a mapping) are the user's own.
        if parent is not None and parent in valid and not _is_structured(schema, parent):
            continue
        if parent is not None and parent not in valid:
            continue  # the parent is reported already
        raise ConfigError(_unknown_key_message(schema, key, where))


def _is_structured(schema: DictConfig, dotted: str) -> bool:
    node = OmegaConf.select(schema, dotted, throw_on_missing=False)
    return isinstance(node, DictConfig) and OmegaConf.get_type(node) not in (dict, None)


def _quote_if_string(schema: DictConfig, item: str) -> str:
    """`key=value` with the value quoted when `key` is a string field: YAML would read
    `optim.mixed_precision=no` as the boolean false (and `yes`, `on`, `off` likewise)."""
    key, _, value = item.partition("=")
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(schema, parent, throw_on_missing=False) if parent else schema
    owner = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    hint = typing.get_type_hints(owner).get(leaf) if is_dataclass(owner) else None
    if hint not in (str, Optional[str]) or value in ("null", "~") or value[:1] in ("'", '"'):
        return item
    return f"{key}={json.dumps(value)}"


def load_config(
    schema: type[T],
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
) -> T:
    """Defaults of `schema` <- YAML `files` <- `overrides` ("a.b=c"); returns a typed config object.

    The result is an OmegaConf DictConfig that behaves like an instance of `schema` (attribute
    access, type checks on assignment). Use `to_yaml` to print or save it.
    """
    if not is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass, got {schema!r}")
    base = OmegaConf.structured(schema)
    layers: list[tuple[DictConfig, str]] = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (pass an existing YAML file, e.g. configs/quickstart.yaml)")
        try:
            loaded = OmegaConf.load(path)
        except Exception as e:  # YAML syntax errors come in several exception types
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, DictConfig):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
        layers.append((loaded, str(path)))
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        try:
            layers.append((OmegaConf.from_dotlist([_quote_if_string(base, item)]), f"override '{item}'"))
        except OmegaConfBaseException as e:
            raise ConfigError(f"override '{item}': {e}") from None
    cfg = base
    for layer, where in layers:
        _check_keys(base, layer, where)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except (ConfigKeyError, ConfigAttributeError) as e:
            raise ConfigError(_unknown_key_message(base, str(e.full_key or e.key), where)) from None
        except ValidationError as e:
            raise ConfigError(f"{where}: bad value for '{e.full_key}': {e.msg.splitlines()[0]}") from None
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config incomplete or inconsistent at '{e.full_key}': {str(e).splitlines()[0]}") from None
    OmegaConf.set_readonly(cfg, False)
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_config(cfg: Any, run_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config into the run directory (the single source of truth for the run)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(to_yaml(cfg))
    tmp.replace(path)
    return path


def load_run_config(schema: type[T], run_dir: str | Path, name: str = "config.yaml") -> T:
    """Re-read a run's saved config against the current schema."""
    return load_config(schema, [Path(run_dir) / name])


def split_cli(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate `key=value` overrides from other arguments (for argparse's parse_known_args)."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    rest = [a for a in argv if a not in overrides]
    return overrides, rest
