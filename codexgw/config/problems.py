# -*- test-case-name: tests.test_config -*-
"""
What is wrong with a configuration, as values: one L{Problem} per mistake and
the L{ConfigError} that carries them all, so an operator fixes a file in one
pass instead of one error per restart.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Problem:
    """
    One thing wrong with a configuration, kept structured so that
    C{codexgw check-config --json} can report it field by field.

    @ivar file: the file (or C{<defaults>}, or an environment variable's
        source) the problem is in.
    @ivar key: the dotted key (C{upstreams.main.timeouts.idle}); empty when
        the whole file is at fault.
    @ivar message: what is wrong and what is expected instead: the fix.
    """

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        if not self.key:
            return f"{self.file}: {self.message}"
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """
    The configuration is invalid.

    @ivar details: every problem found, in the order found.
    @ivar problems: the same, one line each, naming file, key and expectation.
    """

    def __init__(self, details: list[Problem]) -> None:
        self.details = details
        self.problems = [str(p) for p in details]
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


def describe(value: Any) -> str:
    """What a YAML value is, as a problem names it (C{a list}, C{nothing})."""
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
