"""
The reference docs against the code they describe: routes (docs/api.md),
config keys, defaults and environment variables (docs/configuration.md),
metrics (docs/operations.md). A failure names what is missing or stale and
where, so the fix is an edit to the docs (or to the code that drifted).
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import codexgw
from codexgw import config
from codexgw.http.routes import GatewayApp
from codexgw.obs.metrics import GatewayMetrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SOURCE = os.path.dirname(os.path.abspath(codexgw.__file__))

# Route headings: ### `METHOD /path`, nothing else on the line.
HEADING = re.compile(r"^### `([A-Z]+) (/[^`]*)`\s*$", re.MULTILINE)
# The CORS preflight is answered for any path by codexgw.http.cors, not by a route.
PREFLIGHT = ("OPTIONS", "/{any}")
# Werkzeug converter names as the docs (and the metrics' route labels) spell them.
PARAMETER_NAMES = {"rid": "id"}

NO_DEFAULT = "—"
ENV_NAME = re.compile(r"\bCODEXGW_[A-Z_]+\b")


def read(name: str) -> str:
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def docPath(rule: str) -> str:
    """C{/v1/responses/<string:rid>} as the docs write it: C{/v1/responses/{id}}."""

    def name(m: re.Match[str]) -> str:
        return "{" + PARAMETER_NAMES.get(m.group(1), m.group(1)) + "}"

    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", name, rule)


def routes() -> set[tuple[str, str]]:
    """Every (method, path) the Klein app serves, HEAD aside."""
    out = set()
    for rule in GatewayApp.app.url_map.iter_rules():
        for method in rule.methods or ():
            if method != "HEAD":
                out.add((method, docPath(rule.rule)))
    return out


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row (C{\\|} is a pipe inside a cell)."""
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [p.strip() for p in parts[1:-1]]


def keyRows(text: str) -> dict[str, list[str]]:
    """
    The rows of every table whose header starts with C{| key |}, by the key
    path in their first cell (C{| `listen` | ... |}); a key twice is kept
    under C{path#2} so the duplicate shows up as stale.
    """
    rows: dict[str, list[str]] = {}
    inKeyTable = False
    for line in text.splitlines():
        if not line.startswith("|"):
            inKeyTable = False
            continue
        row = cells(line)
        if row and row[0] == "key":
            inKeyTable = True
            continue
        if not inKeyTable or set("".join(row)) <= set("-: "):
            continue
        m = re.fullmatch(r"`([^`]+)`", row[0])
        path = m.group(1) if m else row[0]
        while path in rows:
            path += "#2"
        rows[path] = row
    return rows


def render(value: Any) -> str:
    """A default as YAML would write it, as the docs' default cells show it."""
    if value is None:
        return NO_DEFAULT
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + "}"
    return str(value)


def sourceFiles() -> list[str]:
    out = []
    for directory, _, files in os.walk(SOURCE):
        out += [os.path.join(directory, f) for f in files if f.endswith(".py")]
    return sorted(out)


class RenderTests(SynchronousTestCase):
    """The rendering the default cells are compared with."""

    def test_render(self) -> None:
        self.assertEqual(
            [render(v) for v in (300.0, 0.5, 3, None, True, False, ("low", "high"), (), "x")],
            ["300", "0.5", "3", NO_DEFAULT, "true", "false", "[low, high]", "[]", "x"],
        )

    def test_doc_paths(self) -> None:
        self.assertEqual(
            docPath("/v1/responses/<string:rid>/input_items"), "/v1/responses/{id}/input_items"
        )


class ApiDocTests(SynchronousTestCase):
    """docs/api.md has one heading per route, and no heading for a route that is gone."""

    def setUp(self) -> None:
        self.headings = [(m.group(1), m.group(2)) for m in HEADING.finditer(read("api.md"))]

    def test_every_route_has_a_heading(self) -> None:
        missing = sorted(routes() - set(self.headings))
        self.assertEqual(
            missing,
            [],
            "docs/api.md lacks a heading for these routes; add a section headed "
            + ", ".join(f"### `{m} {p}`" for m, p in missing),
        )

    def test_every_heading_is_a_route(self) -> None:
        stale = sorted(set(self.headings) - routes() - {PREFLIGHT})
        self.assertEqual(
            stale,
            [],
            "docs/api.md documents routes the app does not serve (renamed or removed?): "
            + ", ".join(f"{m} {p}" for m, p in stale),
        )

    def test_headings_are_unique(self) -> None:
        twice = sorted({h for h in self.headings if self.headings.count(h) > 1})
        self.assertEqual(twice, [], f"docs/api.md has these route headings twice: {twice}")

    def test_preflight_is_documented(self) -> None:
        self.assertIn(
            PREFLIGHT,
            self.headings,
            "docs/api.md lacks the CORS preflight section, headed ### `OPTIONS /{any}`",
        )

    def test_every_error_code_is_documented(self) -> None:
        """Error codes on GatewayError classes and raised with code=... appear in the docs."""
        import codexgw.http.auth  # noqa: F401 - defines Forbidden
        from codexgw.errors import GatewayError

        codes: set[str] = set()
        pending: list[type[GatewayError]] = [GatewayError]
        while pending:
            cls = pending.pop()
            pending += cls.__subclasses__()
            if cls.code:
                codes.add(cls.code)
        for path in sourceFiles():
            with open(path, encoding="utf-8") as f:
                codes.update(re.findall(r"\bcode=\"([a-z_]+)\"", f.read()))
        text = read("api.md")
        missing = sorted(c for c in codes if f"`{c}`" not in text)
        self.assertEqual(
            missing,
            [],
            "docs/api.md does not mention these error codes (add them to the error table): "
            + ", ".join(missing),
        )


class ConfigurationDocTests(SynchronousTestCase):
    """docs/configuration.md has a row per config key, with its default and env variable."""

    def setUp(self) -> None:
        self.text = read("configuration.md")
        self.rows = keyRows(self.text)

    def test_every_key_has_a_row(self) -> None:
        missing = [p for p in config.keyPaths() if p not in self.rows]
        self.assertEqual(
            missing,
            [],
            "docs/configuration.md lacks a row for these keys; add "
            "'| `PATH` | default | env | description |' to a key table: " + ", ".join(missing),
        )

    def test_every_row_is_a_key(self) -> None:
        stale = sorted(set(self.rows) - set(config.keyPaths()))
        self.assertEqual(
            stale,
            [],
            "docs/configuration.md has rows for keys codexgw.config does not know "
            "(renamed, removed, or listed twice?): " + ", ".join(stale),
        )

    def test_rows_have_four_cells(self) -> None:
        bad = sorted(p for p, row in self.rows.items() if len(row) != 4)
        self.assertEqual(
            bad, [], f"docs/configuration.md: these rows need key|default|env|description: {bad}"
        )

    def test_defaults_match(self) -> None:
        wrong = []
        for path, value in config.defaults().items():
            row = self.rows.get(path)
            if row is None or len(row) < 2:
                continue  # reported by test_every_key_has_a_row
            cell = row[1].strip().strip("`")
            if cell != render(value):
                wrong.append(f"{path}: docs say {row[1]!r}, code says {render(value)!r}")
        self.assertEqual(
            wrong, [], "docs/configuration.md has wrong defaults:\n  " + "\n  ".join(wrong)
        )

    def test_environment_variables_are_documented(self) -> None:
        names = set(config.ENVIRONMENT)
        for path in sourceFiles():
            with open(path, encoding="utf-8") as f:
                names.update(ENV_NAME.findall(f.read()))
        missing = sorted(n for n in names if not re.search(rf"\b{n}\b", self.text))
        self.assertEqual(
            missing,
            [],
            "docs/configuration.md does not mention these environment variables "
            "(codexgw.config.ENVIRONMENT or codexgw/ source uses them): " + ", ".join(missing),
        )

    def test_environment_overrides_sit_in_their_key_rows(self) -> None:
        """A variable that sets a key is named in that key's env cell."""
        wrong = []
        for name, sets in config.ENVIRONMENT.items():
            path = sets.split()[0].replace("<default>", "<name>")
            row = self.rows.get(path)
            if row is not None and len(row) > 2 and name not in row[2]:
                wrong.append(f"{path}: env cell {row[2]!r} should name {name}")
        self.assertEqual(wrong, [], "docs/configuration.md:\n  " + "\n  ".join(wrong))


class OperationsDocTests(SynchronousTestCase):
    """docs/operations.md explains every metric the gateway exports."""

    def test_every_metric_is_documented(self) -> None:
        names = []
        for metric in GatewayMetrics().registry.collect():
            names.append(metric.name + ("_total" if metric.type == "counter" else ""))
        text = read("operations.md")
        missing = sorted(n for n in names if f"`{n}`" not in text)
        self.assertEqual(
            missing,
            [],
            "docs/operations.md does not explain these metrics (add them to the metrics "
            "table, in backticks): " + ", ".join(missing),
        )
