# -*- test-case-name: tests.test_docs,tests.test_config -*-
"""
What the schema declares, listed: every section and its keys, every key's
dotted path and plain default, and every environment variable with what it
sets. C{docs/configuration.md} is checked against these (C{tests/test_docs}),
and the loader refuses keys not listed here.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import attrs

from codexgw.config.meta import Key, blocks, defaultOf, fileName, keyFields, keyOf, sectionKeys
from codexgw.config.schema import Config, ProfileBlocks
from codexgw.config.structure import isNamedSections, isSectionList, optional


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


def _section(t: Any) -> tuple[type | None, str]:
    """The class a field of type C{t} nests, and the path suffix of its items."""
    t = optional(t)
    if attrs.has(t):
        return t, ""
    if isSectionList(t):
        return typing.get_args(t)[0], "[]"
    if isNamedSections(t):
        return typing.get_args(t)[1], ".<name>"
    if t is ProfileBlocks:
        return t, ".<name>"
    return None, ""


def walk(
    cls: type = Config, path: str = ""
) -> Iterator[tuple[str, attrs.Attribute[Any], Key, type | None, str]]:
    """
    Every key field under C{cls}, depth first: its dotted path, the field,
    its L{Key}, the class it nests (if a section) and its items' path.
    """
    for f in attrs.fields(cls):
        k = keyOf(f)
        if k.derived:
            continue
        at = _join(path, k.section, fileName(f))
        nested, suffix = _section(k.shape or f.type)
        yield at, f, k, nested, at + suffix
        if nested is not None and nested is not ProfileBlocks:
            yield from walk(nested, at + suffix)


def sections() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {"": sectionKeys(Config)}
    for block in blocks(Config):
        out[block] = tuple(fileName(f) for f in keyFields(Config, block))
    for _, _, _, nested, inner in walk():
        if nested is ProfileBlocks:
            out[inner] = ProfileBlocks.keys()
        elif nested is not None:
            out[inner] = sectionKeys(nested)
    return out


SECTIONS: dict[str, tuple[str, ...]] = sections()
"""
Every key the config file may hold, by the section it sits in; the parser
refuses any other, and C{docs/configuration.md} is checked against it.
"""


def keyPaths() -> list[str]:
    """Every dotted key path (C{upstreams.<name>.timeouts.idle}), sections included."""
    return [
        f"{section}.{key}" if section else key for section, keys in SECTIONS.items() for key in keys
    ]


def defaults() -> dict[str, Any]:
    """
    The default of every key that has a plain one, by dotted path; not of a
    key the docs describe in words (C{docDefault}), nor of those under one.
    """
    out: dict[str, Any] = {}
    skipped: list[str] = []
    for path, f, k, nested, _ in walk():
        if any(path.startswith(s) for s in skipped):
            continue
        if k.docDefault is not None:
            skipped.append(path + ".")
            skipped.append(path + "[]")
            continue
        if nested is not None or f.default is attrs.NOTHING:
            continue
        out[path] = defaultOf(f)
    return out


def envOf(cls: type, name: str) -> str:
    """The environment variable that sets C{cls}'s field C{name}."""
    env = keyOf(attrs.fields_dict(cls)[name]).env
    assert env is not None, name
    return env


def environment() -> dict[str, str]:
    out = {"CODEXGW_CONFIG": "the config file, when --config is not given"}
    for path, _, k, _, _ in walk():
        if k.env is not None:
            sets = path.replace(".<name>.", ".<default>.")
            out[k.env] = f"{sets} ({k.envNote})" if k.envNote else sets
    return out


ENVIRONMENT: dict[str, str] = environment()
"""The environment variables that override config keys, and what each sets."""
