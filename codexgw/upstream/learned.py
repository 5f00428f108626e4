# -*- test-case-name: tests.upstream.test_learned_params -*-
"""
Request parameters an upstream refused, learned from its answers.

Clients keep adding request fields, and each new one is answered with a 400
by some strict Chat server ("Unsupported parameter", "Unrecognized request
argument", pydantic's "Extra inputs are not permitted", serde's "unknown
field"). Rather than make users write strip lists by hand, a request whose
first answer is such a refusal, naming a top-level parameter the gateway
sent, is sent once more without it, before anything of the answer reached
the client; the upstream's L{RefusedParams} remembers it (in memory, bounded,
logged once per parameter, shown in C{/health}), so that later requests go
without it at once.

Only names that are top-level keys of the body actually sent are ever
removed, and never the ones a request cannot do without: an error naming
anything else is relayed as it came.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IResponse

from codexgw.upstream.bodies import readCapped, replayed

log = Logger()

REFUSAL_STATUSES = frozenset({400, 422})
"""Where a refused parameter is looked for: 400, and FastAPI's 422 for pydantic servers."""

ESSENTIAL = frozenset({"model", "messages", "input", "stream", "tools"})
"""Never removed: without them the request means something else, or nothing."""

LIMIT = 32
"""The most parameters remembered per upstream: a bound against a server that names anything."""

# A parameter's name, whole: "tools[0].strict" names no top-level "tools".
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}(?![\w.\-\[])"
_Q = r"[`'\"]?"
_PATTERNS = [
    # OpenAI: "Unsupported parameter: 'max_tokens' is not supported with this model."
    # llama.cpp: "Unsupported param: best_of"
    re.compile(rf"unsupported param(?:eter)?s?\s*:?\s*{_Q}({_NAME}){_Q}", re.I),
    # OpenAI, Azure: "Unrecognized request argument supplied: foo"
    re.compile(rf"unrecognized (?:request )?arguments? supplied\s*:?\s*{_Q}({_NAME}){_Q}", re.I),
    # serde (DeepSeek and other Rust servers), Go's DisallowUnknownFields (Ollama),
    # Gemini's OpenAI endpoint: "unknown field `foo`, expected one of ...",
    # 'json: unknown field "foo"', 'Unknown name "foo": Cannot find field.'
    re.compile(rf"unknown (?:field|parameter|argument|name)s?\s*:?\s*{_Q}({_NAME}){_Q}", re.I),
    # Groq: "property 'foo' is unsupported"
    re.compile(rf"property {_Q}({_NAME}){_Q} is (?:unsupported|not supported)", re.I),
    # "'foo' is not a supported parameter", "Parameter 'foo' is not supported"
    re.compile(rf"parameter {_Q}({_NAME}){_Q} is not (?:supported|allowed|permitted)", re.I),
]
# pydantic (vLLM, SGLang, Mistral, FastAPI servers): extra_forbidden at loc
# ["body", "foo"], as JSON or as a Python repr inside a message string.
_LOC = re.compile(rf"""['"]?loc['"]?\s*[:=]\s*[\[(]\s*['"]body['"]\s*,\s*['"]({_NAME})['"]""")
_EXTRA = re.compile(
    r"extra inputs are not permitted|extra_forbidden|extra fields not permitted", re.I
)
_REFUSAL_CODES = frozenset(
    {"unsupported_parameter", "unknown_parameter", "unrecognized_parameter", "extra_forbidden"}
)


def _texts(value: Any) -> Iterator[str]:
    """Every string in a decoded error body, depth-first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _errors(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a decoded error body, depth-first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _errors(item)
    elif isinstance(value, list):
        for item in value:
            yield from _errors(item)


def _named(body: bytes) -> Iterator[str]:
    """The parameter names an error body says were refused, most explicit first."""
    try:
        decoded: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    texts = list(_texts(decoded)) if decoded is not None else [body.decode("utf-8", "replace")]
    for obj in _errors(decoded):
        param, code = obj.get("param"), obj.get("code")
        if isinstance(param, str) and code in _REFUSAL_CODES:
            yield param
        loc, kind, msg = obj.get("loc"), obj.get("type"), obj.get("msg")
        extra = kind == "extra_forbidden" or (isinstance(msg, str) and _EXTRA.search(msg))
        if extra and isinstance(loc, list) and len(loc) == 2 and loc[0] == "body":
            if isinstance(loc[1], str):
                yield loc[1]
    for text in texts:
        for pattern in _PATTERNS:
            for match in pattern.finditer(text):
                yield match.group(1)
        if _EXTRA.search(text):
            for match in _LOC.finditer(text):
                yield match.group(1)


def refusedParameter(status: int, body: bytes, sent: Mapping[str, Any]) -> str | None:
    """
    The top-level parameter of C{sent} that an upstream's error answer
    (C{status}, C{body}) refused as unsupported, or L{None}: the answer is
    not such a refusal, or it names nothing that was sent, or only what a
    request cannot go without (L{ESSENTIAL}).
    """
    if status not in REFUSAL_STATUSES:
        return None
    for name in _named(body):
        if name in sent and name not in ESSENTIAL:
            return name
    return None


class RefusedParams:
    """
    What one upstream refused, in the order it was learned; at most
    L{LIMIT} names, each logged once, when it is learned.
    """

    def __init__(self, upstream: str, limit: int = LIMIT) -> None:
        self.upstream = upstream
        self._limit = limit
        self._names: dict[str, None] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def names(self) -> list[str]:
        """What C{/health} shows."""
        return list(self._names)

    def remember(self, name: str, requestId: str | None = None) -> bool:
        """Learn C{name}; L{True} if it was new (and so logged now)."""
        if name in self._names or len(self._names) >= self._limit:
            return False
        self._names[name] = None
        log.warn(
            "upstream {upstream} refused the parameter {param}: it is no longer sent there "
            "(until restart; see /health) request_id={request_id}",
            upstream=self.upstream,
            param=name,
            request_id=requestId,
        )
        return True

    def strip(self, body: dict[str, Any]) -> dict[str, Any]:
        """C{body} without what this upstream refused (C{body} itself if nothing is)."""
        if not self._names or not any(name in body for name in self._names):
            return body
        return {k: v for k, v in body.items() if k not in self._names}


async def sendLearning(
    refused: RefusedParams,
    body: dict[str, Any],
    post: Callable[[bytes], Deferred[IResponse]],
    onRetry: Callable[[str, float], None] | None = None,
    requestId: str | None = None,
) -> IResponse:
    """
    Send C{body} with C{post} (one upstream's C{send}, its own retries
    applied), without what the upstream is known to refuse; a refusal of a
    parameter that was sent is answered by sending once more without it.

    The answer returned can be read as if it came straight from the
    upstream: an error read here to look for a parameter is replayed.
    """
    body = refused.strip(body)
    response = await post(orjson.dumps(body))
    if response.code not in REFUSAL_STATUSES:
        return response
    error = await readCapped(response)
    name = refusedParameter(response.code, error, body)
    if name is None:
        return replayed(response, error)
    refused.remember(name, requestId)
    if onRetry is not None:
        onRetry("refused_param", 0.0)
    without = {k: v for k, v in body.items() if k != name}
    again = await post(orjson.dumps(without))
    if again.code not in REFUSAL_STATUSES:
        return again
    # Once is all a request is retried; a second refusal is relayed, but
    # remembered, so that the next request goes without both.
    error = await readCapped(again)
    other = refusedParameter(again.code, error, without)
    if other is not None:
        refused.remember(other, requestId)
    return replayed(again, error)


__all__ = ["RefusedParams", "refusedParameter", "sendLearning"]
