"""
WebSocket mode rows of bench/run.py (issue 12): what an open socket costs a
gateway process, and a 20-turn tool loop over one socket against the same
loop as 20 HTTP requests that each carry the whole history.

Uses the `websockets` asyncio client (the openai SDK's own), bounded in
sockets, turns and seconds, on loopback only.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

TOOL_MODEL = "tool-bench"
OUTPUT = "".join(f"src/module_{i}.py: 12 passed, 0 failed\n" for i in range(50))
TOOLS = [
    {
        "type": "function",
        "name": "shell",
        "description": "Run a command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    }
]


async def _turn(ws: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Send one response.create; the terminal event's response."""
    await ws.send(json.dumps({"type": "response.create", **body}))
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
        kind = event.get("type")
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response: dict[str, Any] = event["response"]
            return response
        if kind == "error":
            raise RuntimeError(f"error event: {event}")


def _calls(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in response.get("output", []) if item.get("type") == "function_call"]


def _outputs(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        # What a shell tool returns in an agent loop: a screenful of output.
        {"type": "function_call_output", "call_id": c["call_id"], "output": OUTPUT}
        for c in calls
    ]


async def socketMemory(port: int, rss: Callable[[], float], count: int) -> dict[str, float]:
    """C{count} sockets open at once, each after a warm-up turn (its input kept)."""
    import websockets

    url = f"ws://127.0.0.1:{port}/v1/responses"
    before = rss()
    sockets: list[Any] = []
    started = time.perf_counter()
    try:
        for _ in range(count):
            ws = await websockets.connect(url, max_size=None, compression=None)
            sockets.append(ws)
            await _turn(
                ws,
                {
                    "model": TOOL_MODEL,
                    "generate": False,
                    "store": False,
                    "instructions": "You are a coding agent.",
                    "input": [{"type": "message", "role": "user", "content": "<environment>"}],
                    "tools": TOOLS,
                },
            )
            if time.perf_counter() - started > 60:
                break
        await asyncio.sleep(0.5)
        opened = len(sockets)
        after = rss()
    finally:
        await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)
    return {
        "sockets": opened,
        "rss_before_mb": before,
        "rss_open_mb": after,
        "kb_per_socket": (after - before) * 1024 / max(1, opened),
    }


class _HTTP:
    """One keep-alive HTTP/1.1 connection that reads whole answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, limit=2**24
            )
        reader, writer = self.reader, self.writer
        assert reader is not None
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        if b"transfer-encoding: chunked" in head:
            out = b""
            while True:
                size = int((await reader.readline()).strip(), 16)
                if size == 0:
                    await reader.readline()
                    return status, out
                out += (await reader.readexactly(size + 2))[:-2]
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0])
        return status, await reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def toolLoop(port: int, turns: int, cpu: Callable[[], float]) -> dict[str, float]:
    """
    The same tool loop both ways, three rounds each, medians: over one
    socket (each turn continues the last with only the tool output) and as
    streamed HTTP requests with the whole history each time (what a
    C{store: false} client sends). C{cpu} is the gateway's CPU seconds.
    """
    import websockets

    first = {"type": "message", "role": "user", "content": "Fix the failing test."}
    base = {"model": TOOL_MODEL, "store": False, "tools": TOOLS, "instructions": "Be brief."}

    async def overSocket() -> tuple[float, float, int]:
        sent = 0
        started, spent = time.perf_counter(), cpu()
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/v1/responses", max_size=None, compression=None
        ) as ws:
            body: dict[str, Any] = {**base, "input": [first]}
            for _ in range(turns):
                sent += len(json.dumps(body))
                response = await _turn(ws, body)
                body = {
                    **base,
                    "previous_response_id": response["id"],
                    "input": _outputs(_calls(response)),
                }
        return time.perf_counter() - started, cpu() - spent, sent

    async def overHTTP() -> tuple[float, float, int]:
        history: list[dict[str, Any]] = [first]
        sent = 0
        http = _HTTP(port)
        started, spent = time.perf_counter(), cpu()
        try:
            for _ in range(turns):
                raw = json.dumps({**base, "input": history, "stream": True}).encode()
                sent += len(raw)
                status, answer = await http.post("/v1/responses", raw)
                if status != 200:
                    raise RuntimeError(f"HTTP turn answered {status}: {answer[:200]!r}")
                response = _completed(answer)
                history = history + response["output"] + _outputs(_calls(response))
        finally:
            http.close()
        return time.perf_counter() - started, cpu() - spent, sent

    socketRuns, httpRuns = [], []
    for _ in range(3):
        socketRuns.append(await overSocket())
        httpRuns.append(await overHTTP())

    def median(runs: list[tuple[float, float, int]], i: int) -> float:
        return float(statistics.median(r[i] for r in runs))

    return {
        "turns": turns,
        "socket_ms": median(socketRuns, 0) * 1000,
        "http_ms": median(httpRuns, 0) * 1000,
        "socket_cpu_ms": median(socketRuns, 1) * 1000,
        "http_cpu_ms": median(httpRuns, 1) * 1000,
        "socket_client_kb": socketRuns[0][2] / 1024,
        "http_client_kb": httpRuns[0][2] / 1024,
    }


def _completed(sse: bytes) -> dict[str, Any]:
    for block in sse.split(b"\n\n"):
        if b"event: response.completed" in block:
            data = block.split(b"data: ", 1)[1]
            response: dict[str, Any] = json.loads(data)["response"]
            return response
    raise RuntimeError("no response.completed in the HTTP answer")


def report(memory: dict[str, float] | None, loop: dict[str, float] | None) -> list[str]:
    lines = ["", "WebSocket mode (issue 12)"]
    if memory:
        lines.append(
            f"  {memory['sockets']:.0f} open sockets on a fresh gateway (each after a warm-up): "
            f"{memory['kb_per_socket']:.1f} KB per socket "
            f"(RSS {memory['rss_before_mb']:.1f} -> {memory['rss_open_mb']:.1f} MB)"
        )
    if loop:
        lines.append(
            f"  {loop['turns']:.0f}-turn tool loop, medians of 3: one socket "
            f"{loop['socket_ms']:.0f} ms (gateway CPU {loop['socket_cpu_ms']:.0f} ms), client "
            f"sent {loop['socket_client_kb']:.0f} KB; HTTP with the whole history "
            f"{loop['http_ms']:.0f} ms (gateway CPU {loop['http_cpu_ms']:.0f} ms), client sent "
            f"{loop['http_client_kb']:.0f} KB; socket/HTTP time "
            f"{loop['socket_ms'] / loop['http_ms']:.2f}x"
        )
    return lines
