# -*- test-case-name: tests.dialects.chat.test_request_from_hub -*-
"""
What a Chat Completions upstream accepts, as data.

Chat upstreams differ in small ways that break a bridge: which field caps the
output, whether C{strict} or C{stream_options} are rejected, where reasoning
text arrives, whether earlier reasoning must be sent back. The translators
consult one L{ChatDialect} instead of branching on provider names, so a new
provider is a new value (later built from a YAML profile), not new code.
The defaults describe OpenAI's own Chat Completions API.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class ChatDialect:
    """
    The capabilities and quirks of one Chat Completions upstream.

    @ivar max_tokens_field: the request field that caps output tokens
        (C{"max_completion_tokens"} or the older C{"max_tokens"}).
    @ivar supports_strict: C{strict} may be sent on function tools and JSON
        schema response formats.
    @ivar supports_parallel_tool_calls: C{parallel_tool_calls} may be sent.
    @ivar supports_stream_options: C{stream_options: {"include_usage": true}}
        may be sent (without it most upstreams report no usage at all).
    @ivar supports_reasoning_effort: C{reasoning_effort} may be sent.
    @ivar supports_response_format: C{response_format} may be sent.
    @ivar supports_metadata: C{metadata} may be sent (OpenAI accepts it only
        with C{store}, so the default is not to).
    @ivar supports_user: C{user} may be sent.
    @ivar supports_prompt_cache_key: C{prompt_cache_key} may be sent (the
        provider's prompt cache routes by it).
    @ivar supports_service_tier: C{service_tier} may be sent.
    @ivar reasoning_fields: delta fields read as reasoning text, in order of
        preference (DeepSeek: C{reasoning_content}; newer vLLM: C{reasoning}).
    @ivar send_back_reasoning: put the reasoning of an earlier turn back on the
        following assistant message as C{reasoning_content} (DeepSeek/Kimi
        thinking need it during tool use).
    @ivar single_system_message: merge all system/developer text into one
        leading system message (some templates reject a second system turn).
    @ivar drop_unsupported_parts: drop file/audio parts instead of refusing
        the request with a 400.
    @ivar images_in_tool_messages: C{tool} messages may carry image parts;
        otherwise images in tool output move to a following user message.
    @ivar image_detail_original: what C{detail: "original"} becomes (Chat
        knows only low/high/auto); L{None} omits C{detail}.
    @ivar summarize_reasoning: when the client asks for a reasoning summary
        (C{reasoning.summary}), deliver the upstream's reasoning text as
        summary text too, besides the raw C{reasoning_text} (the Codex CLI
        shows only summaries by default); off, reasoning is raw text only.
    """

    max_tokens_field: str = "max_completion_tokens"
    supports_strict: bool = True
    supports_parallel_tool_calls: bool = True
    supports_stream_options: bool = True
    supports_reasoning_effort: bool = True
    supports_response_format: bool = True
    supports_metadata: bool = False
    supports_user: bool = True
    supports_prompt_cache_key: bool = False
    supports_service_tier: bool = False
    reasoning_fields: tuple[str, ...] = ("reasoning_content", "reasoning")
    send_back_reasoning: bool = False
    single_system_message: bool = False
    drop_unsupported_parts: bool = False
    images_in_tool_messages: bool = False
    image_detail_original: str | None = "high"
    summarize_reasoning: bool = True


OPENAI = ChatDialect()
