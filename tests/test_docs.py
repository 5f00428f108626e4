"""
The reference docs against the code they describe: routes (docs/api.md),
config keys, defaults and environment variables (docs/configuration.md),
metrics (docs/operations.md), packages and layering contracts
(docs/architecture.md), the embedding examples (docs/embedding.md). A failure
names what is missing or stale and where, so the fix is an edit to the docs
(or to the code that drifted).
"""

from __future__ import annotations

import configparser
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


# A package as the architecture page names it: `codexgw/http/`, in backticks,
# ending in a slash (`codexgw/dialects/<name>/` is a placeholder, not a name).
PACKAGE_REF = re.compile(r"`(codexgw(?:/[a-z_]+)+)/`")
# A module file it names: `codexgw/dialects/chat/errors.py`.
MODULE_REF = re.compile(r"`(codexgw(?:/[a-z_]+)+\.py)`")
# A contract in the layering section: "- **name**: what it means".
CONTRACT_ITEM = re.compile(r"^- \*\*(.+?)\*\*", re.MULTILINE)


def packages() -> set[str]:
    """Every package of codexgw but the top one, as C{codexgw/a/b}."""
    out = set()
    for directory, _, files in os.walk(SOURCE):
        if "__init__.py" in files and directory != SOURCE:
            out.add("codexgw/" + os.path.relpath(directory, SOURCE).replace(os.sep, "/"))
    return out


def contracts() -> list[str]:
    """The names of setup.cfg's import-linter contracts, in file order."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")
    return [
        " ".join(parser[s]["name"].split())
        for s in parser.sections()
        if s.startswith("importlinter:contract:")
    ]


def section(text: str, heading: str) -> str:
    """A page's C{## heading} section, up to the next C{## } heading."""
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return m.group(1) if m else ""


class ArchitectureDocTests(SynchronousTestCase):
    """
    docs/architecture.md names every package that exists, and none that does
    not, and every layering contract setup.cfg declares.
    """

    def setUp(self) -> None:
        self.text = read("architecture.md")
        # Markdown wraps lines anywhere; names are compared with spaces collapsed.
        self.flat = " ".join(self.text.split())

    def test_packages(self) -> None:
        """The package table of a real tree finds its packages (the check below can fail)."""
        self.assertTrue({"codexgw/http", "codexgw/dialects/chat"} <= packages())

    def test_every_package_is_in_the_package_table(self) -> None:
        table = set(PACKAGE_REF.findall(section(self.text, "The packages")))
        missing = sorted(packages() - table)
        self.assertEqual(
            missing,
            [],
            "docs/architecture.md's package table (## The packages) lacks a row for these "
            "packages; add '| `PACKAGE/` | its one role |': " + ", ".join(missing),
        )

    def test_every_package_named_exists(self) -> None:
        stale = sorted(set(PACKAGE_REF.findall(self.text)) - packages())
        self.assertEqual(
            stale,
            [],
            "docs/architecture.md names packages codexgw does not have (renamed or removed?): "
            + ", ".join(stale),
        )

    def test_every_module_named_exists(self) -> None:
        root = os.path.dirname(SOURCE)
        stale = sorted(
            m
            for m in set(MODULE_REF.findall(self.text))
            if not os.path.isfile(os.path.join(root, m))
        )
        self.assertEqual(
            stale,
            [],
            "docs/architecture.md names modules that do not exist (renamed or removed?): "
            + ", ".join(stale),
        )

    def test_every_contract_is_explained(self) -> None:
        names = contracts()
        self.assertNotEqual(names, [], "setup.cfg declares no import-linter contracts")
        missing = [n for n in names if n not in self.flat]
        self.assertEqual(
            missing,
            [],
            "docs/architecture.md does not explain these import-linter contracts of setup.cfg "
            "(add '- **NAME**: what it keeps apart' under ## The layering contracts): "
            + "; ".join(missing),
        )

    def test_every_contract_explained_is_declared(self) -> None:
        items = CONTRACT_ITEM.findall(section(self.text, "The layering contracts"))
        stale = [" ".join(i.split()) for i in items if " ".join(i.split()) not in contracts()]
        self.assertEqual(
            stale,
            [],
            "docs/architecture.md explains contracts setup.cfg does not declare "
            "(renamed or removed?): " + "; ".join(stale),
        )


class EmbeddingDocTests(SynchronousTestCase):
    """docs/embedding.md links every example, and every example it links exists."""

    def test_examples_are_linked(self) -> None:
        text = read("embedding.md")
        linked = set(re.findall(r"\]\(examples/([^)]+)\)", text))
        present = {
            f for f in os.listdir(os.path.join(DOCS, "examples")) if not f.startswith(("_", "."))
        }
        self.assertEqual(
            (sorted(present - linked), sorted(linked - present)),
            ([], []),
            "docs/embedding.md: (examples not linked, links to examples that do not exist)",
        )

    def test_exported_names_are_documented(self) -> None:
        text = read("embedding.md")
        missing = [n for n in codexgw.__all__ if n != "__version__" and f"`{n}" not in text]
        self.assertEqual(
            missing,
            [],
            "docs/embedding.md does not describe these codexgw exports: " + ", ".join(missing),
        )
