"""
Tests for L{codexgw.obs.logs}: the access event, the JSON-lines observer, the
text observer and the credential scrubber.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from codexgw.obs.logs import ACCESS_FORMAT, jsonObserver, logAccess, redact, textObserver

SECRET = "sk-proj-0123456789abcdefSECRET"

ACCESS: dict[str, Any] = {
    "method": "POST",
    "route": "/v1/responses",
    "status": 200,
    "duration_ms": 12.5,
    "upstream": "main",
    "model": "gpt-4o-mini",
    "key": "ci-bot",
    "request_id": "req-7f3a",
    "outcome": "complete",
}


def raiseAndLog(log: Logger, message: str) -> None:
    """Log a failure whose exception text is C{message}."""
    try:
        raise ValueError(message)
    except ValueError:
        log.failure("upstream call failed")


class JSONObserverTests(SynchronousTestCase):
    """
    L{jsonObserver} writes one JSON object per line.
    """

    def setUp(self) -> None:
        self.stream = io.StringIO()
        self.log = Logger(namespace="codexgw.test", observer=jsonObserver(self.stream))

    def lines(self) -> list[dict[str, Any]]:
        text = self.stream.getvalue()
        self.assertTrue(text.endswith("\n"), text)
        return [orjson.loads(line) for line in text.splitlines()]

    def test_one_object_per_line_with_message_level_and_namespace(self) -> None:
        self.log.info("hello {who}", who="world")
        self.log.warn("second")
        first, second = self.lines()
        self.assertEqual(first["message"], "hello world")
        self.assertEqual(first["level"], "info")
        self.assertEqual(first["namespace"], "codexgw.test")
        self.assertEqual(second["message"], "second")
        self.assertEqual(second["level"], "warn")

    def test_each_line_is_a_whole_object(self) -> None:
        self.log.info("multi\nline {x}", x="va\nlue")
        text = self.stream.getvalue()
        self.assertEqual(text.count("\n"), 1)
        [line] = self.lines()
        self.assertEqual(line["message"], "multi\nline va\nlue")

    def test_simple_fields_are_included(self) -> None:
        self.log.info(
            "request",
            route="/v1/chat/completions",
            status=502,
            ratio=0.25,
            retried=True,
            model=None,
        )
        [line] = self.lines()
        self.assertEqual(line["route"], "/v1/chat/completions")
        self.assertEqual(line["status"], 502)
        self.assertEqual(line["ratio"], 0.25)
        self.assertIs(line["retried"], True)
        self.assertIn("model", line)
        self.assertIsNone(line["model"])

    def test_complex_fields_and_twisted_internals_are_left_out(self) -> None:
        self.log.info("x", body={"a": 1}, items=[1, 2], obj=object())
        [line] = self.lines()
        self.assertEqual(set(line), {"time", "level", "namespace", "message"})

    def test_time_is_the_event_time(self) -> None:
        self.log.info("x")
        [line] = self.lines()
        self.assertIsInstance(line["time"], float)
        self.assertGreater(line["time"], 0)

    def test_every_level_is_named(self) -> None:
        for level in LogLevel.iterconstants():
            self.log.emit(level, "at {level_name}", level_name=level.name)
        self.assertEqual(
            [line["level"] for line in self.lines()],
            [level.name for level in LogLevel.iterconstants()],
        )

    def test_secret_in_the_message_is_redacted(self) -> None:
        self.log.info("sending {header}", header=f"Authorization: Bearer {SECRET}")
        [line] = self.lines()
        self.assertEqual(line["message"], "sending Authorization: Bearer [redacted]")

    def test_secret_in_a_field_is_redacted(self) -> None:
        """
        Redaction is the last guard, so it covers the fields written beside
        the message too, not only the message.
        """
        self.log.info("sending request", authorization=f"Bearer {SECRET}")
        self.assertNotIn("0123456789abcdef", self.stream.getvalue())
        [line] = self.lines()
        self.assertEqual(line["authorization"], "Bearer [redacted]")

    def test_failure_has_a_redacted_traceback(self) -> None:
        raiseAndLog(self.log, f"upstream said: invalid api_key={SECRET}")
        self.assertNotIn("0123456789abcdef", self.stream.getvalue())
        [line] = self.lines()
        self.assertEqual(line["level"], "critical")
        self.assertEqual(line["message"], "upstream call failed")
        self.assertIn("ValueError", line["traceback"])
        self.assertIn("api_key=[redacted]", line["traceback"])

    def test_events_without_a_failure_have_no_traceback(self) -> None:
        self.log.error("plain error")
        [line] = self.lines()
        self.assertNotIn("traceback", line)

    def test_observer_does_not_change_the_event_other_observers_see(self) -> None:
        seen: list[dict[str, Any]] = []
        observer = jsonObserver(self.stream)

        def both(event: dict[str, Any]) -> None:
            observer(event)
            seen.append(event)

        raiseAndLog(Logger(namespace="codexgw.test", observer=both), "boom")
        self.assertNotIn("log_failure_text", seen[0])


class AccessLogTests(SynchronousTestCase):
    """
    L{logAccess} emits the one access event of a request through
    C{twisted.logger}'s global publisher.
    """

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def accessEvents(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("log_namespace") == "codexgw.access"]

    def test_access_line_names_the_request(self) -> None:
        logAccess(**ACCESS)
        [event] = self.accessEvents()
        text = formatEvent(event)
        for expected in (
            "POST",
            "/v1/responses",
            "200",
            "12.5ms",
            "upstream=main",
            "model=gpt-4o-mini",
            "request_id=req-7f3a",
            "outcome=complete",
        ):
            self.assertIn(expected, text)
        self.assertTrue(text.startswith("POST /v1/responses 200 12.5ms "), text)

    def test_access_line_is_the_documented_format(self) -> None:
        """The line is ACCESS_FORMAT (what docs/operations.md shows), field for field."""
        fields = dict(ACCESS, model="m {x}", key="k=1", duration_ms=0.1)
        logAccess(**fields)
        [event] = self.accessEvents()
        self.assertEqual(formatEvent(event), ACCESS_FORMAT.format(**fields))
        self.assertEqual(event["log_namespace"], "codexgw.access")
        self.assertIsInstance(event["log_time"], float)

    def test_access_event_is_info_with_structured_fields(self) -> None:
        logAccess(**ACCESS)
        [event] = self.accessEvents()
        self.assertEqual(event["log_level"], LogLevel.info)
        for key, value in ACCESS.items():
            self.assertEqual(event[key], value)

    def test_access_event_through_the_json_observer(self) -> None:
        stream = io.StringIO()
        observer = jsonObserver(stream)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        logAccess(**dict(ACCESS, status=499, outcome="client_gone"))
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
        [line] = [line for line in lines if line["namespace"] == "codexgw.access"]
        self.assertEqual(line["level"], "info")
        self.assertEqual(line["status"], 499)
        self.assertEqual(line["request_id"], "req-7f3a")
        self.assertEqual(line["upstream"], "main")
        self.assertEqual(line["model"], "gpt-4o-mini")
        self.assertEqual(line["duration_ms"], 12.5)
        self.assertIn("outcome=client_gone", line["message"])


class TextObserverTests(SynchronousTestCase):
    """
    L{textObserver} is Twisted's text format with the same redaction guard.
    """

    def setUp(self) -> None:
        self.stream = io.StringIO()
        self.log = Logger(namespace="codexgw.test", observer=textObserver(self.stream))

    def test_message_is_written_in_twisteds_format(self) -> None:
        self.log.info("hello {who}", who="world")
        text = self.stream.getvalue()
        self.assertIn("[codexgw.test#info] hello world", text)
        self.assertTrue(text.endswith("\n"))

    def test_secret_in_the_message_is_redacted(self) -> None:
        self.log.info("sending {header}", header=f"Authorization: Bearer {SECRET}")
        text = self.stream.getvalue()
        self.assertNotIn("0123456789abcdef", text)
        self.assertIn("Bearer [redacted]", text)

    def test_secret_in_a_traceback_is_redacted(self) -> None:
        raiseAndLog(self.log, f"upstream said: invalid api_key={SECRET}")
        text = self.stream.getvalue()
        self.assertIn("ValueError", text)
        self.assertNotIn("0123456789abcdef", text)


class RedactTests(SynchronousTestCase):
    """
    L{redact} replaces anything shaped like a credential.
    """

    def assertRedacted(self, text: str, expected: str) -> None:
        self.assertEqual(redact(text), expected)

    def test_bearer_token(self) -> None:
        self.assertRedacted(f"Authorization: Bearer {SECRET}", "Authorization: Bearer [redacted]")

    def test_bearer_is_case_insensitive(self) -> None:
        self.assertRedacted(
            "authorization: bearer abcdef123456", "authorization: bearer [redacted]"
        )
        self.assertRedacted("BEARER abcdef123456", "BEARER [redacted]")

    def test_bearer_jwt(self) -> None:
        jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl-_x"
        self.assertRedacted(f"Bearer {jwt}", "Bearer [redacted]")

    def test_bearer_token_with_base64_characters_is_fully_redacted(self) -> None:
        """
        RFC 6750 bearer tokens may hold C{+ / ~ =}; no part of one survives.
        """
        token = "AbC+dEf/GhIjKlMn~OpQr=="
        self.assertRedacted(f"Authorization: Bearer {token}", "Authorization: Bearer [redacted]")

    def test_api_key_assignment(self) -> None:
        self.assertRedacted("api_key=abcdef123456", "api_key=[redacted]")
        self.assertRedacted("API-KEY: abcdef123456", "API-KEY: [redacted]")
        self.assertRedacted("apikey abcdef123456", "apikey [redacted]")

    def test_api_key_in_json(self) -> None:
        redacted = redact(f'{{"api_key": "{SECRET}", "model": "gpt-4o"}}')
        self.assertNotIn("0123456789abcdef", redacted)
        self.assertIn('"model": "gpt-4o"', redacted)

    def test_azure_api_key_header(self) -> None:
        self.assertRedacted("api-key: 0123456789abcdef0123", "api-key: [redacted]")

    def test_bare_openai_style_key(self) -> None:
        self.assertRedacted(
            f"upstream rejected {SECRET} as invalid", "upstream rejected sk-[redacted] as invalid"
        )

    def test_every_secret_in_a_text_is_redacted(self) -> None:
        text = redact("first sk-aaaaaaaaaa then Bearer bbbbbbbbbb then api_key=cccccccccc")
        self.assertEqual(text, "first sk-[redacted] then Bearer [redacted] then api_key=[redacted]")

    def test_ordinary_text_is_unchanged(self) -> None:
        for text in (
            "POST /v1/responses 200 12.5ms upstream=main model=gpt-4o request_id=req-7f3a",
            "bearer of bad news",
            "no api key configured",
            "sk-abc",
            "",
        ):
            self.assertRedacted(text, text)

    def test_words_ending_in_sk_are_not_redacted(self) -> None:
        """Only a token starting with C{sk-} is a key, not C{task-…} or C{disk-…}."""
        for text in ("task-runner-01 started", "disk-usage-high", "risk-assessment"):
            self.assertRedacted(text, text)
