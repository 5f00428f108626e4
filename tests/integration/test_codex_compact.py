"""
The real Codex CLI's remote compaction through the gateway, on a Chat
upstream.

Codex compacts remotely only for a provider it takes for OpenAI's (named
C{OpenAI} in its config, as a throwaway config here does): it then sends a
turn whose input ends in C{{"type": "compaction_trigger"}} and expects exactly
one C{compaction} item back, which it sends as input from then on. A tiny
C{model_auto_compact_token_limit} and an upstream reporting many prompt
tokens make it compact in the middle of its first turn. (Codex 0.169 lists
C{remote_compaction_v2} as a removed feature: the trigger is its only remote
compaction, and it does not call C{/v1/responses/compact}.)
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from codexgw.dialects.responses.compaction import DEFAULT_PROMPT, SUMMARY_PREFIX
from tests.fakes.chat_upstream import chatChunk, textStream
from tests.integration.test_codex_cli import runCodex, toolCallStream
from tests.integration.test_integration import LiveGateway

SUMMARY = "codexgw-summary-7431: the user asked to echo a marker; it was echoed."
ANSWER = "codexgw-after-compaction-1187"


def _usage(prompt: int) -> bytes:
    return chatChunk(
        {},
        choices=[],
        usage={"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5},
    )


class _Upstream:
    """A tool call reporting a huge prompt, then the summary, then the answer."""

    def __init__(self) -> None:
        self.streamed = 0

    def __call__(self, request: Request, body: Any) -> Any:
        if not body.get("stream"):
            request.setHeader(b"content-type", b"application/json")
            return orjson.dumps(
                {
                    "id": "chatcmpl-sum",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": SUMMARY},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 900, "completion_tokens": 20, "total_tokens": 920},
                }
            )
        self.streamed += 1
        if self.streamed == 1:
            chunks = toolCallStream("call_c1", "exec_command", '{"cmd": "echo compact-me"}')
            chunks = [*chunks[:-1], _usage(200_000), chunks[-1]]
        else:
            chunks = textStream([ANSWER])
        request.setHeader(b"content-type", b"text/event-stream")
        request.write(b"".join(chunks))
        request.finish()
        return NOT_DONE_YET


class CodexRemoteCompactionTests(TestCase):
    timeout = 240

    async def test_compaction_trigger_is_answered_and_expanded(self) -> None:
        live = LiveGateway(self, seal_key="codex-compact-test-key")
        handler = _Upstream()
        live.upstream.script += [handler] * 12
        config = (
            'model = "m1"\nmodel_provider = "gw"\nmodel_auto_compact_token_limit = 2000\n\n'
            "[model_providers.gw]\n"
            # The name Codex reserves for OpenAI: only then does it compact remotely.
            'name = "OpenAI"\n'
            f'base_url = "{live.base}"\nenv_key = "CODEXGW_KEY"\nwire_api = "responses"\n'
        )
        code, message, out, err = await runCodex(
            self, live.base, "run echo compact-me for me", configToml=config
        )
        chats = [r.body for r in live.upstream.received if r.path == b"/v1/chat/completions"]
        trace = orjson.dumps(chats, option=orjson.OPT_INDENT_2).decode()[-6000:]
        self.assertEqual(
            code, 0, f"codex failed:\nstdout:{out[-2000:]}\nstderr:{err[-3000:]}\n{trace}"
        )
        # The summary request: not streamed, the gateway's own prompt last
        # (Codex's local compaction would stream its own prompt instead).
        summaries = [c for c in chats if c.get("stream") is False]
        self.assertEqual(len(summaries), 1, trace)
        self.assertEqual(summaries[0]["messages"][-1], {"role": "user", "content": DEFAULT_PROMPT})
        self.assertNotIn("tools", summaries[0])
        # After it, Codex sent the compaction item back, expanded upstream.
        after = chats[chats.index(summaries[0]) + 1 :]
        self.assertTrue(after, trace)
        self.assertIn(
            {"role": "user", "content": SUMMARY_PREFIX + SUMMARY}, after[0]["messages"], trace
        )
        self.assertIn(ANSWER, message)
        # Remote compaction v2 (the trigger on /v1/responses), not v1's route.
        routes = {
            s.labels["route"]
            for metric in live.gateway.metrics.registry.collect()
            for s in metric.samples
            if s.name == "codexgw_requests_total"
        }
        self.assertIn("/v1/responses", routes)
        self.assertNotIn("/v1/responses/compact", routes)
