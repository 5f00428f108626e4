"""
A tiny MCP server over stdio (newline-delimited JSON-RPC 2.0) for tests that
run the real Codex CLI: one tool, C{lookup_secret}, whose answer carries
L{SECRET} so that a test can see the tool ran. Each call is appended to the
file named by C{$MCP_CALLS}, when set. Run as C{python mcp_server.py}.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

SECRET = "mcp-secret-7331"

TOOL = {
    "name": "lookup_secret",
    "description": "Look up the secret value stored in the vault under a key.",
    "inputSchema": {
        "type": "object",
        "properties": {"key": {"type": "string", "description": "The key to look up."}},
        "required": ["key"],
        "additionalProperties": False,
    },
}


def answer(request: dict[str, Any]) -> dict[str, Any] | None:
    """The reply to one message; L{None} for a notification."""
    method = request.get("method")
    params = request.get("params") or {}
    if "id" not in request:
        return None
    if method == "initialize":
        result: Any = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "vault", "version": "1.0.0"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        key = (params.get("arguments") or {}).get("key", "")
        calls = os.environ.get("MCP_CALLS")
        if calls:
            with open(calls, "a") as f:
                f.write(json.dumps(params) + "\n")
        result = {
            "content": [{"type": "text", "text": f"The secret for {key} is {SECRET}."}],
            "isError": False,
        }
    elif method == "ping":
        result = {}
    else:
        return {
            "jsonrpc": "2.0",
            "id": request["id"],
            "error": {"code": -32601, "message": f"method not found: {method}"},
        }
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except ValueError:
            continue
        reply = answer(request) if isinstance(request, dict) else None
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
