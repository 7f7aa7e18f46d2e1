"""``--set`` and ``--set-string`` values, parsed the way Helm parses them.

``a=1,b.c=x`` sets two values; ``a.b=x`` nests; ``list[0].name=x`` indexes a list
(growing it with nulls); ``list={a,b}`` sets a list; ``\\,``, ``\\.``, ``\\=`` and
``\\\\`` escape. Types follow Helm's ``--set``: ``true``/``false`` become booleans,
``null`` is None (which removes the key when the values are laid over the chart's
defaults, :func:`sparkapps.rendering.deep_merge`), an integer without a leading
zero becomes an int, and everything else (floats too) stays a string;
``--set-string`` keeps every value a string. Checked against the real
``helm template`` in ``tests/sparkapps``.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from jobs.errors import ManifestError

__all__ = ["apply_set"]

_INDEX = re.compile(r"^(.*?)\[(\d+)\]$")
_MAX_INDEX = 65536  # Helm's own bound on a list index


def apply_set(values: dict[str, Any], expression: str, *, strings: bool = False) -> None:
    """Apply one ``--set`` (or, with ``strings``, ``--set-string``) expression to ``values``.

    Args:
        values: the values to change in place.
        expression: ``KEY=VALUE[,KEY=VALUE...]`` as given to Helm.
        strings: keep every value a string (``--set-string``).

    Raises:
        ManifestError: the expression is malformed (says where, and the expected form).
    """
    option = "--set-string" if strings else "--set"
    for key, raw in _pairs(expression, option):
        value = [_typed(r, strings) for r in raw] if isinstance(raw, list) else _typed(raw, strings)
        _assign(values, _path(key, option, expression), value)


def _pairs(expression: str, option: str) -> list[tuple[str, str | list[str]]]:
    """Split ``k=v,k2={a,b}`` into (key, raw value or raw list) pairs, escapes kept in keys."""
    pairs: list[tuple[str, str | list[str]]] = []
    i, n = 0, len(expression)
    while i < n:
        key, i = _until(expression, i, "=,")
        if i >= n or expression[i] != "=":
            raise ManifestError(
                f"{option} {expression!r}: {key!r} has no value; expected KEY=VALUE"
            )
        if not key:
            raise ManifestError(f"{option} {expression!r}: a value without a key")
        i += 1
        if i < n and expression[i] == "{":
            _, close = _until(expression, i + 1, "}")
            if close >= n:
                raise ManifestError(f"{option} {expression!r}: a list '{{' without its '}}'")
            items = _split_items(expression[i + 1 : close])
            pairs.append((key, items))
            i = close + 1
            if i < n and expression[i] != ",":
                raise ManifestError(f"{option} {expression!r}: expected ',' after the list")
        else:
            raw, i = _until(expression, i, ",", unescape=True)
            pairs.append((key, raw))
        i += 1  # the comma
    return pairs


def _until(text: str, i: int, stops: str, *, unescape: bool = False) -> tuple[str, int]:
    """Read from ``i`` to the first unescaped char in ``stops``; return (text, its index)."""
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1] if unescape else text[i : i + 2])
            i += 2
            continue
        if char in stops:
            break
        out.append(char)
        i += 1
    return "".join(out), i


def _split_items(body: str) -> list[str]:
    items: list[str] = []
    i = 0
    while True:
        item, i = _until(body, i, ",", unescape=True)
        items.append(item)
        if i >= len(body):
            return items
        i += 1


def _path(key: str, option: str, expression: str) -> list[str | int]:
    """``a.b[0].c`` (escapes allowed) → ``["a", "b", 0, "c"]``."""
    path: list[str | int] = []
    i = 0
    while i <= len(key):
        part, i = _until(key, i, ".", unescape=True)
        indices: list[int] = []
        while (match := _INDEX.match(part)) is not None:
            part, index = match.group(1), int(match.group(2))
            if index > _MAX_INDEX:
                raise ManifestError(f"{option} {expression!r}: index {index} is too large")
            indices.insert(0, index)
        name = part
        if not name:
            raise ManifestError(f"{option} {expression!r}: an empty key in {key!r}")
        path.append(name)
        path.extend(indices)
        i += 1
    return path


def _assign(node: Any, path: list[str | int], value: Any) -> None:
    for here, nxt in itertools.pairwise(path):
        child = _get(node, here)
        if isinstance(nxt, int):
            if not isinstance(child, list):
                child = []
        elif not isinstance(child, dict):
            child = {}
        _put(node, here, child)
        node = child
    _put(node, path[-1], value)


def _get(node: Any, key: str | int) -> Any:
    if isinstance(key, int):
        return node[key] if key < len(node) else None
    return node.get(key)


def _put(node: Any, key: str | int, value: Any) -> None:
    if isinstance(key, int):
        node.extend([None] * (key + 1 - len(node)))
    node[key] = value


def _typed(raw: str, strings: bool) -> Any:
    """Helm's ``typedVal``: bools, null and ints (no leading zero) are typed; the rest a string."""
    if strings:
        return raw
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if raw.lower() == "null":
        return None
    if raw.startswith("0") and raw != "0":
        return raw  # a leading zero keeps it a string (a version, a zip code)
    if re.fullmatch(r"[+-]?[0-9]+", raw) and -(2**63) <= int(raw) < 2**63:
        return int(raw)
    return raw
