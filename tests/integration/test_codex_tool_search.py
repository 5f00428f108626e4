"""
The real Codex CLI with an MCP server and a model whose catalog entry has
C{supports_search_tool: true}: Codex then offers the MCP tools only through
its client-run C{tool_search}, and the bridge must carry the search, the
tools it revealed and a call of one of them through a Chat upstream.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.config import CodexModel, parse
from codexgw.http.codex import entry
from codexgw.service import Gateway
from tests.fakes import mcp_server
from tests.fakes.chat_upstream import textStream
from tests.integration.test_codex_cli import runCodex, toolCallStream
from tests.integration.test_integration import LiveGateway, httpClient, serve

MCP_SERVER = os.path.abspath(mcp_server.__file__)


def _stream(request: Request, chunks: list[bytes]) -> Any:
    request.setHeader(b"content-type", b"text/event-stream")
    request.write(b"".join(chunks))
    request.finish()
    return NOT_DONE_YET


def _names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


class CatalogEntryTests(SynchronousTestCase):
    def test_search_tool_sets_supports_search_tool(self) -> None:
        self.assertFalse(entry("m1", CodexModel())["supports_search_tool"])
        self.assertTrue(entry("m1", CodexModel(search_tool=True))["supports_search_tool"])


class CodexToolSearchTests(TestCase):
    timeout = 240

    async def test_codex_finds_and_calls_an_mcp_tool_through_tool_search(self) -> None:
        live = LiveGateway(self)
        config = parse(
            {
                "upstreams": {
                    "main": {
                        "base_url": live.gateway.config.upstreams["main"].base_url,
                        "retries": {"max_attempts": 1},
                    }
                },
                "models": [{"match": "m1", "upstream": "main", "codex": {"search_tool": True}}],
            },
            "t.yaml",
            {},
        )
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        port = serve(self, gateway.resource)
        base = f"http://127.0.0.1:{port.getHost().port}/v1"
        rendered = await (await httpClient(self).get(base + "/models?format=codex")).json()
        [model] = rendered["models"]
        self.assertTrue(model["supports_search_tool"])
        catalogPath = os.path.abspath(self.mktemp())
        with open(catalogPath, "w") as f:
            json.dump(rendered, f)

        def search(request: Request, body: Any) -> Any:
            # The MCP tool is hidden: only tool_search can find it.
            args = orjson.dumps({"query": "vault secret lookup", "limit": 5}).decode()
            return _stream(request, toolCallStream("call_search", "tool_search", args))

        def callRevealed(request: Request, body: Any) -> Any:
            found = [n for n in _names(body) if n.endswith("lookup_secret")]
            if not found:
                return _stream(request, textStream(["no revealed tool"]))
            args = orjson.dumps({"key": "alpha"}).decode()
            return _stream(request, toolCallStream("call_mcp", found[0], args))

        def answer(request: Request, body: Any) -> Any:
            tool = [m for m in body["messages"] if m.get("role") == "tool"][-1]
            said = "found" if mcp_server.SECRET in str(tool["content"]) else "missing"
            return _stream(request, textStream(["The vault secret was ", said, "."]))

        live.upstream.script += [search, callRevealed, answer]
        calls = os.path.abspath(self.mktemp())
        mcp = (
            "\n[mcp_servers.vault]\n"
            f"command = {json.dumps(sys.executable)}\n"
            f"args = [{json.dumps(MCP_SERVER)}]\n"
            f"env = {{ MCP_CALLS = {json.dumps(calls)} }}\n"
        )
        code, message, out, err = await runCodex(
            self,
            base,
            "look up the vault secret for alpha",
            providerExtra=mcp,
            extraArgs=["-c", f"model_catalog_json={catalogPath}"],
        )
        detail = f"codex failed:\nstdout:{out[-3000:]}\nstderr:{err[-3000:]}"
        self.assertEqual(code, 0, detail)
        chats = [r.body for r in live.upstream.received if r.path == b"/v1/chat/completions"]
        self.assertEqual(len(chats), 3, detail)
        first, second, third = chats

        # The first request offers tool_search, not the deferred MCP tool.
        self.assertIn("tool_search", _names(first))
        self.assertFalse([n for n in _names(first) if "lookup_secret" in n])

        # The second carries the search and the tools it revealed, callable.
        [revealed] = [n for n in _names(second) if n.endswith("lookup_secret")]
        self.assertIn("vault", revealed)
        calls_made = [m for m in second["messages"] if m.get("tool_calls")]
        self.assertEqual(calls_made[-1]["tool_calls"][0]["function"]["name"], "tool_search")
        self.assertEqual(calls_made[-1]["tool_calls"][0]["id"], "call_search")
        [result] = [m for m in second["messages"] if m.get("role") == "tool"]
        self.assertEqual(result["tool_call_id"], "call_search")
        self.assertIn(revealed, result["content"])

        # The MCP server ran the call, and its result reached the upstream.
        with open(calls) as f:
            ran = [json.loads(line) for line in f]
        self.assertEqual([c["name"] for c in ran], ["lookup_secret"])
        self.assertEqual(ran[0]["arguments"], {"key": "alpha"})
        self.assertIn(revealed, _names(third))
        tool = [m for m in third["messages"] if m.get("role") == "tool"][-1]
        self.assertEqual(tool["tool_call_id"], "call_mcp")
        self.assertIn(mcp_server.SECRET, str(tool["content"]))
        self.assertIn("The vault secret was found.", message)
