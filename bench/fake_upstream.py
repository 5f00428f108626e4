"""
A fast fake Chat Completions upstream for bench/run.py.

Plain asyncio and hand-rolled HTTP/1.1 (keep-alive, Content-Length request
bodies), so that it is never what the benchmark measures. The model name
scripts the answer:

  - C{bench-N}: a stream of N content events (default 20);
  - C{slow-N-MS}: N events, MS milliseconds apart (the 1,000-streams scenario);
  - C{tool-…}: a stream calling the C{shell} tool once (the WebSocket tool loop);
  - anything else, or C{"stream": false}: a small C{chat.completion}.

Usage: python bench/fake_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
).encode()


def chunk(delta: str, finish: str | None = None, usage: bool = False) -> bytes:
    if usage:
        body = (
            '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
            '"model":"bench","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":20,'
            '"total_tokens":32}}'
        )
    else:
        body = (
            '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
            '"model":"bench","choices":[{"index":0,"delta":'
            + delta
            + ',"finish_reason":'
            + ("null" if finish is None else f'"{finish}"')
            + "}]}"
        )
    data = b"data: " + body.encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


FIRST = chunk('{"role":"assistant","content":""}')
TOKEN = chunk('{"content":"tok "}')
FINISH = chunk("{}", "stop")
USAGE = chunk("", usage=True)
DONE = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"x-request-id: req_bench\r\n\r\n"
)
JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
MODELS = (
    b'{"object":"list","data":[{"id":"bench","object":"model","created":0,"owned_by":"bench"}]}'
)


_calls = 0


def toolCall() -> bytes:
    """A stream that calls the shell tool once (the WebSocket tool-loop rows)."""
    global _calls
    _calls += 1
    delta = json.dumps(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": f"call_{_calls}",
                    "type": "function",
                    "function": {"name": "shell", "arguments": '{"cmd": "ls"}'},
                }
            ]
        }
    )
    return SSE_HEAD + FIRST + chunk(delta) + chunk("{}", "tool_calls") + DONE


def plan(body: bytes) -> tuple[bool, int, float, bool]:
    """(stream, events, delay seconds, include usage) from a request body."""
    try:
        req = json.loads(body)
    except ValueError:
        return False, 0, 0.0, False
    model = str(req.get("model", ""))
    stream = req.get("stream") is True
    usage = bool((req.get("stream_options") or {}).get("include_usage"))
    events, delay = 20, 0.0
    parts = model.split("-")
    try:
        if parts[0] == "bench" and len(parts) > 1:
            events = int(parts[1])
        elif parts[0] == "slow":
            events, delay = int(parts[1]), int(parts[2].rstrip("ms")) / 1000
    except (IndexError, ValueError):
        pass
    return stream, events, delay, usage


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET"):
                writer.write(JSON_HEAD % len(MODELS) + MODELS)
                continue
            if b'"model":"tool-' in body or b'"model": "tool-' in body:
                writer.write(toolCall())
                await writer.drain()
                continue
            stream, events, delay, usage = plan(body)
            if not stream:
                writer.write(JSON_HEAD % len(COMPLETION) + COMPLETION)
                continue
            if delay:
                writer.write(SSE_HEAD + FIRST)
                for _ in range(events):
                    await asyncio.sleep(delay)
                    writer.write(TOKEN)
                writer.write(FINISH + (USAGE if usage else b"") + DONE)
            else:
                writer.write(
                    SSE_HEAD + FIRST + TOKEN * events + FINISH + (USAGE if usage else b"") + DONE
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
