"""
Tests for L{codexgw.stream.sse}: the incremental SSE decoder and the frames
written to clients.

The decoder is fed whatever the transport delivers, so the recorded streams in
C{tests/fixtures/sse/} are decoded whole, split once at every byte, split twice
at every pair of bytes (the small ones) and fed one byte at a time: every way
of cutting a stream must give the same events.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from codexgw.stream.sse import (
    BOM,
    DEFAULT_MAX_LINE,
    DONE,
    HEARTBEAT,
    InvalidUTF8,
    LineTooLong,
    SSEDecoder,
    SSEError,
    SSEEvent,
)
from tests.fakes.chat_upstream import textStream
from tests.harness import Harness
from tests.paths import FIXTURES

SSE_FIXTURES = FilePath(FIXTURES).child("sse")


def fixture(name: str) -> bytes:
    return SSE_FIXTURES.child(name).getContent()


def chatPayloads() -> list[str]:
    """The data of each event in the recorded chat streams, one per line."""
    return fixture("chat_payloads.txt").decode("utf-8").splitlines()


CHAT_EVENTS = [SSEEvent(data) for data in chatPayloads()]

FIELDS_EVENTS = [
    SSEEvent('{"type":"response.created"}', "response.created", "resp_1"),
    SSEEvent(
        "first line\n"
        "second line, no space after the colon\n"
        " third line keeps one of its two spaces\n"
        "a: b: colons after the first belong to the value",
        "response.output_text.delta",
        "resp_1",
    ),
    SSEEvent("after an event with no data the name is reset", None, "resp_1"),
    SSEEvent("\na field with no colon is a field with an empty value", None, "resp_2"),
]

UTF8_EVENTS = [
    SSEEvent('{"delta":"你好，世界"}', "消息"),
    SSEEvent('{"delta":"👋🏽 café — naïve"}\n🇫🇷𝄞'),
    SSEEvent('{"delta":"한국어 ✓"}', None, "ключ-1"),
]

MIXED_EVENTS = [
    SSEEvent("one"),
    SSEEvent("two"),
    SSEEvent("three"),
    SSEEvent("four\nfive"),
]

# Every recorded stream with the events it must decode to.
RECORDED = {
    "chat_lf.sse": CHAT_EVENTS,
    "chat_crlf.sse": CHAT_EVENTS,
    "chat_cr.sse": CHAT_EVENTS,
    "fields.sse": FIELDS_EVENTS,
    "utf8.sse": UTF8_EVENTS,
    "mixed_endings.sse": MIXED_EVENTS,
}

# Small enough to try every pair of split points.
SMALL = ("fields.sse", "utf8.sse", "mixed_endings.sse")


def feedAll(decoder: SSEDecoder, chunks: Iterable[bytes]) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def decode(chunks: Iterable[bytes], maxLineLength: int = DEFAULT_MAX_LINE) -> list[SSEEvent]:
    """Feed C{chunks} then close, as a stream that ended cleanly."""
    decoder = SSEDecoder(maxLineLength)
    events = feedAll(decoder, chunks)
    events.extend(decoder.close())
    return events


class RecordedStreamTests(SynchronousTestCase):
    """
    The recorded streams decode to the expected events however they are cut.
    """

    def assertSameEventsForChunks(
        self, name: str, chunks: list[bytes], expected: list[SSEEvent]
    ) -> None:
        decoder = SSEDecoder()
        events = feedAll(decoder, chunks)
        cuts = [len(c) for c in chunks]
        self.assertEqual(events, expected, f"{name} cut into chunks of {cuts}")
        # Each recorded stream ends with a blank line: nothing is left over.
        self.assertEqual(decoder.close(), [], f"{name} cut into chunks of {cuts}")

    def test_fixtures_have_the_line_endings_they_are_named_for(self) -> None:
        """
        The recorded streams really use the line endings their tests rely on
        (a checkout that rewrote line endings would make the tests vacuous).
        """
        lf, crlf, cr = fixture("chat_lf.sse"), fixture("chat_crlf.sse"), fixture("chat_cr.sse")
        self.assertNotIn(b"\r", lf)
        self.assertEqual(crlf.count(b"\r\n"), crlf.count(b"\n"))
        self.assertEqual(crlf.count(b"\r\n"), crlf.count(b"\r"))
        self.assertNotIn(b"\n", cr)
        self.assertEqual(lf.replace(b"\n", b"\r\n"), crlf)
        self.assertEqual(lf.replace(b"\n", b"\r"), cr)
        mixed = fixture("mixed_endings.sse")
        self.assertIn(b"\r\n", mixed)
        self.assertIn(b"\r\r", mixed)
        self.assertIn(b"\n\n", mixed)

    def test_utf8_fixture_holds_multibyte_sequences_of_every_length(self) -> None:
        text = fixture("utf8.sse").decode("utf-8")
        lengths = {len(ch.encode("utf-8")) for ch in text}
        self.assertEqual(lengths, {1, 2, 3, 4})

    def test_chat_stream_decodes_to_its_payloads_ending_with_done(self) -> None:
        events = decode([fixture("chat_lf.sse")])
        self.assertEqual(events, CHAT_EVENTS)
        self.assertEqual(events[-1], SSEEvent("[DONE]"))
        self.assertEqual(len(events), 6)

    def test_crlf_and_lone_cr_streams_decode_like_the_lf_stream(self) -> None:
        lf = decode([fixture("chat_lf.sse")])
        self.assertEqual(decode([fixture("chat_crlf.sse")]), lf)
        self.assertEqual(decode([fixture("chat_cr.sse")]), lf)

    def test_every_recorded_stream_decodes_whole(self) -> None:
        for name, expected in RECORDED.items():
            self.assertSameEventsForChunks(name, [fixture(name)], expected)

    def test_every_single_split_point_gives_the_same_events(self) -> None:
        for name, expected in RECORDED.items():
            stream = fixture(name)
            for i in range(len(stream) + 1):
                self.assertSameEventsForChunks(name, [stream[:i], stream[i:]], expected)

    def test_every_pair_of_split_points_gives_the_same_events(self) -> None:
        for name in SMALL:
            stream, expected = fixture(name), RECORDED[name]
            for i in range(len(stream) + 1):
                for j in range(i, len(stream) + 1):
                    self.assertSameEventsForChunks(
                        name, [stream[:i], stream[i:j], stream[j:]], expected
                    )

    def test_byte_at_a_time_gives_the_same_events(self) -> None:
        for name, expected in RECORDED.items():
            stream = fixture(name)
            chunks = [stream[i : i + 1] for i in range(len(stream))]
            self.assertSameEventsForChunks(name, chunks, expected)

    def test_events_arrive_as_soon_as_their_blank_line_does(self) -> None:
        """
        An event is returned by the C{feed} that completes it, not later: a
        relay must not hold back a token until the next one arrives.
        """
        stream = fixture("chat_lf.sse")
        decoder = SSEDecoder()
        seen = 0
        for i in range(len(stream)):
            seen += len(decoder.feed(stream[i : i + 1]))
            self.assertEqual(seen, stream[: i + 1].count(b"\n\n"))


class LineEndingTests(SynchronousTestCase):
    """
    C{\\n}, C{\\r\\n} and a lone C{\\r} all end a line, wherever the chunks
    are cut.
    """

    def test_crlf_split_between_cr_and_lf_is_one_line_ending(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        # Were the \n a second line ending, this would be the blank line.
        self.assertEqual(decoder.feed(b"\n"), [])
        self.assertEqual(decoder.feed(b"data: b\r\n"), [])
        self.assertEqual(decoder.feed(b"\r\n"), [SSEEvent("a\nb")])

    def test_crlf_split_with_more_data_after_the_lf(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        self.assertEqual(decoder.feed(b"\ndata: b\r\n\r\n"), [SSEEvent("a\nb")])

    def test_lone_cr_at_a_chunk_end_followed_by_cr_is_a_blank_line(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        self.assertEqual(decoder.feed(b"\r"), [SSEEvent("a")])

    def test_lone_cr_at_a_chunk_end_followed_by_a_field(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        self.assertEqual(decoder.feed(b"data: b\r\r"), [SSEEvent("a\nb")])

    def test_cr_cr_lf_is_a_line_end_then_a_blank_line(self) -> None:
        self.assertEqual(decode([b"data: a\r\r\n"]), [SSEEvent("a")])
        self.assertEqual(
            decode([b"data: a\r", b"\r\n", b"data: b\n\n"]), [SSEEvent("a"), SSEEvent("b")]
        )

    def test_lf_after_a_cr_is_skipped_only_once(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"data: a\r")
        self.assertEqual(decoder.feed(b"\n\n"), [SSEEvent("a")])

    def test_an_empty_chunk_does_not_forget_a_pending_cr(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"data: a\r")
        self.assertEqual(decoder.feed(b""), [])
        self.assertEqual(decoder.feed(b"\n"), [])
        self.assertEqual(decoder.feed(b"\n"), [SSEEvent("a")])

    def test_other_unicode_line_breaks_are_part_of_the_value(self) -> None:
        """
        Only CR and LF end SSE lines; form feeds, vertical tabs, U+0085 and
        U+2028 are data.
        """
        data = "a\x0bb\x0cc\x1cd\x85e\u2028f"
        self.assertEqual(decode([b"data: " + data.encode("utf-8") + b"\n\n"]), [SSEEvent(data)])


class FieldTests(SynchronousTestCase):
    """
    Fields are parsed as the SSE grammar says.
    """

    def test_multiline_data_is_joined_with_lf(self) -> None:
        self.assertEqual(
            decode([b"data: one\ndata: two\ndata: three\n\n"]), [SSEEvent("one\ntwo\nthree")]
        )

    def test_multiline_data_is_joined_with_lf_whatever_the_line_ending(self) -> None:
        self.assertEqual(
            decode([b"data: one\r\ndata: two\rdata: three\r\n\r\n"]), [SSEEvent("one\ntwo\nthree")]
        )

    def test_event_field_names_the_event(self) -> None:
        self.assertEqual(
            decode([b"event: response.completed\ndata: {}\n\n"]),
            [SSEEvent("{}", event="response.completed")],
        )

    def test_event_name_applies_only_to_its_own_event(self) -> None:
        self.assertEqual(
            decode([b"event: a\ndata: 1\n\ndata: 2\n\n"]),
            [SSEEvent("1", event="a"), SSEEvent("2")],
        )

    def test_event_name_without_data_is_dropped_at_the_blank_line(self) -> None:
        self.assertEqual(decode([b"event: ping\n\ndata: x\n\n"]), [SSEEvent("x")])

    def test_last_event_field_wins(self) -> None:
        self.assertEqual(decode([b"event: a\nevent: b\ndata: x\n\n"]), [SSEEvent("x", "b")])

    def test_id_field_persists_across_events_until_replaced(self) -> None:
        self.assertEqual(
            decode([b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"]),
            [SSEEvent("a", id="1"), SSEEvent("b", id="1"), SSEEvent("c", id="2")],
        )

    def test_id_containing_nul_is_ignored(self) -> None:
        self.assertEqual(
            decode([b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"]),
            [SSEEvent("a", id="1"), SSEEvent("b", id="1")],
        )

    def test_comments_are_ignored(self) -> None:
        self.assertEqual(
            decode([b": hello\ndata: a\n: between data lines\ndata: b\n\n:\n\n"]),
            [SSEEvent("a\nb")],
        )

    def test_a_comment_alone_dispatches_nothing(self) -> None:
        self.assertEqual(decode([HEARTBEAT * 3]), [])

    def test_comments_are_not_decoded_so_any_bytes_are_allowed(self) -> None:
        self.assertEqual(decode([b": \xff\xfe\ndata: a\n\n"]), [SSEEvent("a")])

    def test_retry_field_is_ignored(self) -> None:
        self.assertEqual(decode([b"retry: 10\ndata: a\n\n"]), [SSEEvent("a")])

    def test_unknown_fields_are_ignored(self) -> None:
        self.assertEqual(
            decode([b"foo: bar\nDATA: shouted\ndata : spaced\ndata: a\n\n"]), [SSEEvent("a")]
        )

    def test_unknown_field_alone_dispatches_nothing(self) -> None:
        self.assertEqual(decode([b"retry: 10\n\nfoo: bar\n\n"]), [])

    def test_data_without_a_colon_is_an_empty_data_line(self) -> None:
        self.assertEqual(decode([b"data\n\n"]), [SSEEvent("")])
        self.assertEqual(decode([b"data\ndata: x\ndata\n\n"]), [SSEEvent("\nx\n")])

    def test_event_without_a_colon_is_an_empty_event_name(self) -> None:
        self.assertEqual(decode([b"event\ndata: x\n\n"]), [SSEEvent("x", event="")])

    def test_id_without_a_colon_resets_the_id(self) -> None:
        self.assertEqual(
            decode([b"id: 1\ndata: a\n\nid\ndata: b\n\n"]),
            [SSEEvent("a", id="1"), SSEEvent("b", id="")],
        )

    def test_data_without_space_after_colon(self) -> None:
        self.assertEqual(decode([b"data:{}\n\n"]), [SSEEvent("{}")])

    def test_only_one_space_after_the_colon_is_removed(self) -> None:
        self.assertEqual(decode([b"data:   x \n\n"]), [SSEEvent("  x ")])

    def test_empty_data_field_dispatches_an_empty_event(self) -> None:
        self.assertEqual(decode([b"data:\n\n"]), [SSEEvent("")])
        self.assertEqual(decode([b"data: \n\n"]), [SSEEvent("")])

    def test_colons_after_the_first_belong_to_the_value(self) -> None:
        self.assertEqual(decode([b'data: {"a": "b:c"}\n\n']), [SSEEvent('{"a": "b:c"}')])

    def test_several_blank_lines_dispatch_once(self) -> None:
        self.assertEqual(decode([b"data: a\n\n\n\n\n"]), [SSEEvent("a")])

    def test_done_sentinel_is_an_ordinary_event(self) -> None:
        self.assertEqual(decode([DONE]), [SSEEvent("[DONE]")])


class Utf8Tests(SynchronousTestCase):
    """
    Lines are UTF-8; a sequence cut by a chunk boundary is not an error.
    """

    def test_multibyte_sequence_split_inside_is_reassembled(self) -> None:
        stream = "data: 👋\n\n".encode()
        for i in range(7, 10):  # inside the 4-byte sequence
            self.assertEqual(decode([stream[:i], stream[i:]]), [SSEEvent("👋")])

    def test_invalid_utf8_raises(self) -> None:
        decoder = SSEDecoder()
        self.assertRaises(InvalidUTF8, decoder.feed, b"data: \xff\xfe\n\n")

    def test_truncated_sequence_at_a_line_end_raises(self) -> None:
        decoder = SSEDecoder()
        self.assertRaises(InvalidUTF8, decoder.feed, b"data: \xe4\xbd\n")

    def test_invalid_utf8_in_a_field_name_raises(self) -> None:
        decoder = SSEDecoder()
        self.assertRaises(InvalidUTF8, decoder.feed, b"\xc0\xafdata: x\n")

    def test_invalid_utf8_in_an_unterminated_last_line_raises_at_close(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: \xff"), [])
        self.assertRaises(InvalidUTF8, decoder.close)

    def test_invalid_utf8_is_an_sse_error(self) -> None:
        self.assertTrue(issubclass(InvalidUTF8, SSEError))


class LineTooLongTests(SynchronousTestCase):
    """
    A line longer than C{maxLineLength} fails the stream instead of growing
    a buffer without bound.
    """

    def test_line_at_the_cap_is_accepted(self) -> None:
        line = b"data: " + b"x" * 14
        self.assertEqual(len(line), 20)
        self.assertEqual(decode([line + b"\n\n"], maxLineLength=20), [SSEEvent("x" * 14)])

    def test_line_at_the_cap_split_at_every_byte_is_accepted(self) -> None:
        stream = b"data: " + b"x" * 14 + b"\r\n\r\n"
        for i in range(len(stream) + 1):
            self.assertEqual(
                decode([stream[:i], stream[i:]], maxLineLength=20), [SSEEvent("x" * 14)]
            )

    def test_complete_line_over_the_cap_raises(self) -> None:
        decoder = SSEDecoder(maxLineLength=20)
        self.assertRaises(LineTooLong, decoder.feed, b"data: " + b"x" * 15 + b"\n")

    def test_complete_line_over_the_cap_after_valid_lines_raises(self) -> None:
        decoder = SSEDecoder(maxLineLength=20)
        self.assertEqual(decoder.feed(b"data: ok\n\n"), [SSEEvent("ok")])
        self.assertRaises(LineTooLong, decoder.feed, b"data: " + b"x" * 15 + b"\r\n")

    def test_partial_line_over_the_cap_raises_before_its_end_arrives(self) -> None:
        decoder = SSEDecoder(maxLineLength=20)
        self.assertRaises(LineTooLong, decoder.feed, b"data: " + b"x" * 15)

    def test_partial_line_growing_past_the_cap_raises_while_buffering(self) -> None:
        """
        A line trickling in without a line ending fails as soon as it passes
        the cap, not when (if ever) it ends.
        """
        decoder = SSEDecoder(maxLineLength=20)
        for _ in range(20):
            self.assertEqual(decoder.feed(b"x"), [])
        self.assertRaises(LineTooLong, decoder.feed, b"x")

    def test_comment_lines_are_capped_too(self) -> None:
        decoder = SSEDecoder(maxLineLength=20)
        self.assertRaises(LineTooLong, decoder.feed, b":" + b" " * 20 + b"\n")

    def test_default_cap_is_four_mebibytes(self) -> None:
        self.assertEqual(SSEDecoder().maxLineLength, 4 * 1024 * 1024)

    def test_line_too_long_is_an_sse_error(self) -> None:
        self.assertTrue(issubclass(LineTooLong, SSEError))


class CloseTests(SynchronousTestCase):
    """
    C{close} dispatches a last event whose blank line never came.
    """

    def test_close_dispatches_event_missing_its_blank_line(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: [DONE]\n"), [])
        self.assertEqual(decoder.close(), [SSEEvent("[DONE]")])

    def test_close_dispatches_an_unterminated_last_line(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"event: done\ndata: a\ndata: b"), [])
        self.assertEqual(decoder.close(), [SSEEvent("a\nb", event="done")])

    def test_close_after_a_trailing_cr_dispatches_once(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        self.assertEqual(decoder.close(), [SSEEvent("a")])

    def test_close_after_a_complete_event_dispatches_nothing(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\n\n"), [SSEEvent("a")])
        self.assertEqual(decoder.close(), [])

    def test_close_with_only_an_event_name_dispatches_nothing(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"event: x\n")
        self.assertEqual(decoder.close(), [])

    def test_close_of_a_stream_ending_in_a_comment_dispatches_nothing(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"data: a\n\n: bye")
        self.assertEqual(decoder.close(), [])

    def test_close_keeps_the_last_id(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(b"id: 9\ndata: a\n")
        self.assertEqual(decoder.close(), [SSEEvent("a", id="9")])


class FramingTests(SynchronousTestCase):
    """The frames the relays write to clients decode as they should."""

    def test_heartbeat_is_a_comment_and_done_is_the_done_sentinel(self) -> None:
        self.assertEqual(HEARTBEAT, b": keep-alive\n\n")
        self.assertEqual(DONE, b"data: [DONE]\n\n")
        self.assertEqual(decode([HEARTBEAT, DONE, HEARTBEAT]), [SSEEvent("[DONE]")])


class ByteOrderMarkTests(SynchronousTestCase):
    """
    One UTF-8 byte order mark at the very start of a stream is dropped (the
    SSE spec says so), however the reads cut it; anywhere else it is text.
    """

    def test_a_leading_bom_split_across_two_feeds_is_dropped(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(BOM[:2]), [])
        self.assertEqual(decoder.feed(BOM[2:] + b"data: hi\n\n"), [SSEEvent("hi")])
        self.assertEqual(decoder.close(), [])

    def test_a_leading_bom_cut_anywhere_in_a_recorded_stream_is_dropped(self) -> None:
        for name, expected in RECORDED.items():
            stream = BOM + fixture(name)
            for i in range(len(stream) + 1):
                self.assertEqual(decode([stream[:i], stream[i:]]), expected, f"{name} cut at {i}")
            self.assertEqual(decode([stream[i : i + 1] for i in range(len(stream))]), expected)

    def test_a_leading_bom_before_a_field_line_keeps_the_field(self) -> None:
        self.assertEqual(
            decode([BOM + b"event: e\r\nid: 1\r\ndata: x\r\n\r\n"]), [SSEEvent("x", "e", "1")]
        )

    def test_a_leading_bom_before_a_blank_line_or_comment(self) -> None:
        self.assertEqual(decode([BOM, b"\n", b"data: a\n\n"]), [SSEEvent("a")])
        self.assertEqual(decode([BOM + b": hello\n", b"data: a\n\n"]), [SSEEvent("a")])

    def test_a_stream_that_is_only_a_bom_has_no_events(self) -> None:
        self.assertEqual(decode([BOM]), [])
        self.assertEqual(decode([BOM[:1], BOM[1:2], BOM[2:]]), [])

    def test_only_one_leading_bom_is_dropped(self) -> None:
        # The second one is the first character of the field name, so the
        # line is an unknown field and is ignored, as the spec's parser does.
        self.assertEqual(decode([BOM + BOM + b"data: x\n\n"]), [])
        self.assertEqual(decode([BOM, BOM[:1], BOM[1:] + b"data: x\n\n"]), [])

    def test_a_bom_after_the_start_is_an_ordinary_character(self) -> None:
        self.assertEqual(decode([b"data: a\n\n" + BOM + b"data: b\n\n"]), [SSEEvent("a")])
        self.assertEqual(decode([b"data: " + BOM + b"x\n\n"]), [SSEEvent("\ufeffx")])

    def test_bytes_that_only_begin_like_a_bom_are_not_lost(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(BOM[:2]), [])
        self.assertRaises(InvalidUTF8, decoder.feed, b"data: x\n")

    def test_a_stream_ending_inside_a_bom_is_invalid_utf8(self) -> None:
        decoder = SSEDecoder()
        decoder.feed(BOM[:2])
        self.assertRaises(InvalidUTF8, decoder.close)

    def test_a_bom_split_after_its_first_byte_is_dropped(self) -> None:
        self.assertEqual(decode([BOM[:1], BOM[1:] + b"data: a\n\n"]), [SSEEvent("a")])


class ByteOrderMarkClientTests(SynchronousTestCase):
    """
    What a client sees of a Chat upstream whose stream opens with a byte
    order mark split across two reads: the bridged answer, whole.
    """

    def test_bridged_stream_opening_with_a_split_bom_reaches_the_client_whole(self) -> None:
        h = Harness()
        client = h.connect()
        client.post(b"/v1/responses", {"model": "m1", "input": "hi", "stream": True})
        response = h.sent[0].respond(200, {b"content-type": b"text/event-stream"})
        # No empty opening chunk: the BOM is in front of the first words.
        chunks = textStream(["Hel", "lo"])[1:]
        response.send(BOM[:2])
        response.send(BOM[2:] + chunks[0])
        for chunk in chunks[1:]:
            response.send(chunk)
        response.end()
        status, _, body = client.response()
        self.assertEqual(status, 200)
        events = [orjson.loads(e.data) for e in decode([body])]
        self.assertEqual(events[-1]["type"], "response.completed")
        completed = events[-1]["response"]
        self.assertEqual(completed["status"], "completed")
        [message] = completed["output"]
        self.assertEqual(message["content"][0]["text"], "Hello")


class OneEventAChunkTests(SynchronousTestCase):
    """
    Upstreams usually write each event as its own chunk, which the decoder
    takes whole: it decodes exactly as the same bytes cut anywhere else.
    """

    def test_recorded_streams_fed_an_event_at_a_time(self) -> None:
        for name, expected in RECORDED.items():
            stream = fixture(name)
            if b"\r" in stream:
                continue
            pieces = [piece + b"\n\n" for piece in stream.split(b"\n\n")[:-1]]
            pieces.append(stream[sum(map(len, pieces)) :])
            self.assertEqual(b"".join(pieces), stream)
            self.assertEqual(decode(pieces), expected, name)

    def test_fields_of_an_earlier_chunk_apply(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"event: delta\nid: 7\n"), [])
        self.assertEqual(decoder.feed(b"data: x\n\n"), [SSEEvent("x", "delta", "7")])
        self.assertEqual(decoder.feed(b"data: y\n\n"), [SSEEvent("y", None, "7")])

    def test_data_lines_of_an_earlier_chunk_are_joined(self) -> None:
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: one\n"), [])
        self.assertEqual(decoder.feed(b"data: two\n\n"), [SSEEvent("one\ntwo")])

    def test_no_space_empty_and_colon_values(self) -> None:
        self.assertEqual(
            decode([b"data:x\n\n", b"data:\n\n", b"data: a: b\n\n", b"data:  two\n\n"]),
            [SSEEvent("x"), SSEEvent(""), SSEEvent("a: b"), SSEEvent(" two")],
        )

    def test_a_field_named_like_data_is_not_data(self) -> None:
        self.assertEqual(decode([b"datax: 1\n\n", b"data: 2\n\n"]), [SSEEvent("2")])

    def test_invalid_utf8_raises(self) -> None:
        self.assertRaises(InvalidUTF8, SSEDecoder().feed, b'data: {"a":"\xff"}\n\n')

    def test_over_the_cap_raises(self) -> None:
        decoder = SSEDecoder(maxLineLength=20)
        self.assertEqual(decoder.feed(b"data: " + b"x" * 14 + b"\n\n"), [SSEEvent("x" * 14)])
        self.assertRaises(LineTooLong, decoder.feed, b"data: " + b"x" * 15 + b"\n\n")

    def test_a_bom_before_the_first_event_is_dropped(self) -> None:
        self.assertEqual(decode([BOM + b"data: x\n\n"]), [SSEEvent("x")])
