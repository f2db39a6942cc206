"""Render Kubernetes objects from the Jinja templates in ``templates/``: pure, no I/O but reading them.

``render(name, values) -> list[dict]`` feeds ``sentinel render``, ``--dry-run`` and apply alike.

Values can never inject YAML. Every ``{{ expression }}`` passes through ``_finalize``, which writes
it as a YAML flow value: strings double-quoted with everything outside printable ASCII escaped,
numbers and booleans as themselves, lists and mappings as flow collections of the same. So a value
holding quotes, newlines, ``{{ }}``, ``: ``, ``#``, a leading ``-`` or ``*`` stays one plain
string. Only what the templates themselves produce (macros, ``{% set %}`` blocks: Jinja marks
them ``Markup`` because autoescaping is on) passes through unquoted; values given to ``render``
are plain data and are checked to be so.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sentinel_ml.errors import ConfigError

TEMPLATES_ENV = "SENTINEL_TEMPLATES"
TEMPLATES = {
    "train": "rayjob-train.yaml.j2",
    "tune": "rayjob-tune.yaml.j2",
    "serve": "rayservice-serve.yaml.j2",
    "cluster": "raycluster.yaml.j2",
}


def templates_dir() -> Path:
    """``$SENTINEL_TEMPLATES``, else ``templates/`` of the source tree, else the installed copy."""
    explicit = os.environ.get(TEMPLATES_ENV)
    candidates = [Path(explicit)] if explicit else []
    package = Path(__file__).resolve().parents[1]  # sentinel_cli/
    candidates += [package.parent / "templates", package / "templates"]
    for folder in candidates:
        if (folder / TEMPLATES["train"]).is_file():
            return folder
    raise ConfigError(
        "Kubernetes templates not found (looked in " + ", ".join(map(str, candidates)) + ")",
        hint=f"run from a source checkout, reinstall sentinel, or set {TEMPLATES_ENV}",
    )


def render(name: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The objects template ``name`` (train, tune, serve, cluster) makes from ``values``."""
    import yaml

    if name not in TEMPLATES:
        raise ConfigError(f"no template {name!r}", hint="use one of " + ", ".join(TEMPLATES))
    _check_plain(values, "values")
    text = render_text(name, values)
    try:
        objects = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as e:  # a template bug, never a value: values cannot reach the syntax
        raise RuntimeError(f"template {TEMPLATES[name]} rendered invalid YAML: {e}\n{text}") from e
    return objects


def render_text(name: str, values: Mapping[str, Any]) -> str:
    return _environment(str(templates_dir())).get_template(TEMPLATES[name]).render(**values)


@lru_cache(maxsize=4)
def _environment(folder: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,  # macro and block output becomes Markup, which _finalize trusts
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["shell"] = shell_join
    env.filters["text"] = _as_text
    return env


def _finalize(value: Any):
    from markupsafe import Markup

    if isinstance(value, Markup):
        return value
    return Markup(yaml_value(value))


def _as_text(value: Any) -> str:
    """A block captured with ``{% set %}`` (Markup) as a plain string, to be quoted like any value."""
    return str(value)


def shell_join(argv: list[Any]) -> str:
    """One shell command line from ``argv``, each word quoted for ``sh``."""
    return shlex.join(str(word) for word in argv)


def yaml_value(value: Any) -> str:
    """``value`` as a YAML flow value that parses back to exactly ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot render the non-finite number {value!r}")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if "." not in mantissa:  # YAML 1.1 reads 1e-05 as a string; 1.0e-05 is a float
            mantissa += ".0"
        if e and exponent[0] not in "+-":
            exponent = "+" + exponent
        return mantissa + (("e" + exponent) if e else "")
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_quote(_key(k))}: {yaml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render a {type(value).__name__} as a YAML value")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be strings, not {type(key).__name__}")
    return key


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _check_plain(value: Any, where: str) -> None:
    """Values are plain data: a str subclass (such as Markup) could slip past the quoting."""
    if value is None or type(value) in (bool, int, float, str):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"{where}: key {k!r} is not a plain string")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(value).__name__} is not plain data (str, number, bool, list, dict)")



def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Objects as a multi-document YAML stream, as ``kubectl apply -f`` takes them."""
    from sentinel_cli.output import to_yaml as document

    return "".join("---\n" + document(obj) for obj in objects)
