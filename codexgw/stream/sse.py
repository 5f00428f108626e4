# -*- test-case-name: tests.stream.test_sse -*-
"""
Server-sent events: an incremental decoder for upstream streams, and the
fixed frames (keep-alive, C{[DONE]}) written to clients.

The decoder works on bytes and is fed whatever the transport delivers: events,
lines and even UTF-8 sequences may be split at any byte. Line endings may be
C{\\n}, C{\\r\\n} or a lone C{\\r} (the SSE grammar allows all three), and a
C{\\r\\n} pair may itself be split across two chunks. Each complete line is
decoded once; nothing is re-scanned, so the cost per byte is constant.

One UTF-8 byte order mark at the very start of the stream is dropped, as the
SSE spec says, even when it arrives split across chunks; anywhere else it is
an ordinary character.

A line longer than C{maxLineLength} bytes fails the stream with
L{LineTooLong} rather than growing a buffer without bound.
"""

from __future__ import annotations

import attrs

DEFAULT_MAX_LINE = 4 * 1024 * 1024
BOM = b"\xef\xbb\xbf"


class SSEError(Exception):
    """The upstream stream is not valid SSE."""


class LineTooLong(SSEError):
    """A single SSE line exceeded the configured cap."""


class InvalidUTF8(SSEError):
    """A line held bytes that are not UTF-8."""


@attrs.define
class SSEEvent:
    """
    One dispatched event (not frozen: a frozen attrs class costs three
    times as much to make, and one is made for every upstream event).

    @ivar event: the C{event:} field, or L{None} (SSE's default "message").
    @ivar data: the C{data:} lines joined with C{\\n}.
    @ivar id: the last C{id:} field seen, or L{None}.
    """

    data: str
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """
    Turns a byte stream into L{SSEEvent}s, incrementally.

    @ivar maxLineLength: the longest line accepted, in bytes.
    """

    def __init__(self, maxLineLength: int = DEFAULT_MAX_LINE) -> None:
        self.maxLineLength = maxLineLength
        # Until the stream's first three bytes are in, what may be the start
        # of a byte order mark; None once past it.
        self._head: bytes | None = b""
        self._buffer = b""
        # The previous chunk ended with \r: a \n opening the next chunk is the
        # second half of the same line ending, not an empty line.
        self._skipLF = False
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """
        Consume C{chunk} and return the events it completed.

        @raise LineTooLong: a line is longer than C{maxLineLength}.
        @raise InvalidUTF8: a line is not UTF-8.
        """
        if not chunk:
            return []
        if self._head is not None:
            chunk = self._head + chunk
            if len(chunk) < len(BOM) and BOM.startswith(chunk):
                self._head = chunk
                return []
            self._head = None
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM) :]
                if not chunk:
                    return []
        if self._skipLF:
            self._skipLF = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._buffer:
            chunk = self._buffer + chunk
            self._buffer = b""
        if not chunk:
            return []
        if not self._data and chunk[-2:] == b"\n\n" and chunk[:5] == b"data:":
            # The usual chunk, one whole event of one data line: made here,
            # without splitting lines or walking the fields.
            end = len(chunk) - 2
            if chunk.find(b"\n", 0, end) < 0 and chunk.find(b"\r", 0, end) < 0:
                if end > self.maxLineLength:
                    raise LineTooLong(f"SSE line longer than {self.maxLineLength} bytes")
                try:
                    text = chunk[6 if chunk[5:6] == b" " else 5 : end].decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InvalidUTF8(f"SSE line is not valid UTF-8: {e.reason}") from None
                event = SSEEvent(text, self._event, self._id)
                self._event = None
                return [event]
        lines = chunk.splitlines()
        last = chunk[-1]
        if last == 0x0D:  # b"\r": may be the first half of \r\n
            self._skipLF = True
        elif last != 0x0A:
            # The final piece has no line ending yet: keep it for later.
            rest = lines.pop()
            if len(rest) > self.maxLineLength:
                raise LineTooLong(f"SSE line longer than {self.maxLineLength} bytes")
            self._buffer = rest
        events: list[SSEEvent] = []
        for line in lines:
            if len(line) > self.maxLineLength:
                raise LineTooLong(f"SSE line longer than {self.maxLineLength} bytes")
            self._line(line, events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent("\n".join(self._data), self._event, self._id))
                self._data = []
            self._event = None
            return
        if line[0] == 0x3A:  # b":" comment
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidUTF8(f"SSE line is not valid UTF-8: {e.reason}") from None
        name, sep, value = text.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        # "retry" and unknown fields are ignored, as the SSE grammar says.

    def close(self) -> list[SSEEvent]:
        """
        The stream ended: dispatch a final event that lacked its blank line.

        Many upstreams close right after C{data: [DONE]\\n} without the blank
        line; treating that as dispatched is kinder than losing it.
        """
        events: list[SSEEvent] = []
        if self._head:
            # A stream of less than a whole byte order mark: a broken line.
            self._buffer, self._head = self._head, None
        if self._buffer:
            line, self._buffer = self._buffer, b""
            self._line(line, events)
        self._line(b"", events)
        return events


HEARTBEAT = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
