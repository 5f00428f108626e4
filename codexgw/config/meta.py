# -*- test-case-name: tests.test_config,tests.test_docs -*-
"""
The vocabulary the schema (L{codexgw.config.schema}) is declared in: a
field's L{Key} metadata, and reading it back (a field's name in the file,
its default, the keys and blocks of a section).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

META = "codexgw.config"
"""The attrs metadata entry holding a field's L{Key}."""


@attrs.frozen
class Key:
    """
    What the schema says of one key beyond its type and default. A field
    without a C{Key} is a key with the plain meaning of its type; one marked
    C{derived} is not in the file at all (computed while loading).

    @ivar doc: one line on what it is for (the docs table says more).
    @ivar name: its name in the file, when not the attribute's.
    @ivar section: the top-level block it sits in (C{server}, C{auth}) when
        the attribute is flat on L{Config}.
    @ivar env: the environment variable that sets it.
    @ivar envNote: how that variable applies, for the environment list.
    @ivar override: the variable simply replaces the file's value when set.
    @ivar unit: what a number counts (seconds, bytes), for the docs.
    @ivar minimum: the least whole number accepted (1, or 0 where 0 is off).
    @ivar choices: the values accepted; C{expected} words them otherwise than
        "a, b or c".
    @ivar emptyIsNone: an empty value (C{""}, 0, C{{}}) means none.
    @ivar falsyIsAbsent: any false value (C{[]}, C{""}) is as if not written.
    @ivar noun: what a list holds, for "expected a list of ...".
    @ivar check: further check of the value: the problem's message or None.
    @ivar nameCheck: the same for each name of a mapping of sections.
    @ivar itemCheck: the same for each item of a list.
    @ivar required: the message when the key is missing or empty.
    @ivar shape: the type as written in the file, when not the attribute's.
    @ivar docDefault: the default in words (the docs say it so), when it is
        not a plain value; for a section, its keys' defaults are too.
    @ivar secret: never logged, never in a repr, redacted from answers.
    @ivar derived: not a key: computed while loading.
    """

    doc: str = ""
    name: str | None = None
    section: str | None = None
    env: str | None = None
    envNote: str = ""
    override: bool = False
    unit: str | None = None
    minimum: int = 1
    choices: tuple[str, ...] = ()
    expected: str | None = None
    emptyIsNone: bool = False
    falsyIsAbsent: bool = False
    noun: str = "strings"
    check: Callable[[Any], str | None] | None = None
    nameCheck: Callable[[str], str | None] | None = None
    itemCheck: Callable[[Any], str | None] | None = None
    required: str | None = None
    shape: Any = None
    docDefault: str | None = None
    secret: bool = False
    derived: bool = False


PLAIN = Key()


def spec(**fields: Any) -> dict[str, Key]:
    """Field metadata declaring a key: C{attrs.field(metadata=spec(env=...))}."""
    return {META: Key(**fields)}


DERIVED = spec(derived=True)


def keyOf(field: attrs.Attribute[Any]) -> Key:
    """The L{Key} of a field (L{PLAIN} when it declares none)."""
    found: Key = field.metadata.get(META, PLAIN)
    return found


def keyFields(cls: type, section: str | None = None) -> list[attrs.Attribute[Any]]:
    """The fields of C{cls} that are keys of the file (in C{section}, for L{Config})."""
    return [f for f in attrs.fields(cls) if not keyOf(f).derived and keyOf(f).section == section]


def defaultOf(field: attrs.Attribute[Any]) -> Any:
    """A field's default value (a factory's called); C{attrs.NOTHING} when it has none."""
    factory: Callable[[], Any] | None = getattr(field.default, "factory", None)
    return factory() if factory is not None else field.default


def fileName(field: attrs.Attribute[Any]) -> str:
    """The name a field has in the file."""
    return keyOf(field).name or field.name


def sectionKeys(cls: type) -> tuple[str, ...]:
    """
    The keys a mapping structured as C{cls} may hold, in declaration order:
    its fields' names, and the block (C{server}) of fields that sit in one.
    """
    out: list[str] = []
    for f in attrs.fields(cls):
        k = keyOf(f)
        if k.derived:
            continue
        name = k.section or fileName(f)
        if name not in out:
            out.append(name)
    return tuple(out)


def blocks(cls: type) -> tuple[str, ...]:
    """The blocks (C{server}, C{auth}) whose fields sit flat on C{cls}."""
    return tuple(dict.fromkeys(s for f in attrs.fields(cls) if (s := keyOf(f).section)))
