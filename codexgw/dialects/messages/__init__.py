# -*- test-case-name: tests.dialects.test_spokes,tests.dialects.messages -*-
"""
The Anthropic Messages spoke: requests to and from the hub, streams to and
from the hub, errors both ways, and the C{count_tokens} estimate.
L{MESSAGES} is the spoke.

Besides the five parts the bridges call, a Messages client's route needs
L{messages_error_body} (a gateway error in Anthropic's shape) and
L{estimate_tokens} (C{POST /v1/messages/count_tokens} without an upstream
that counts).
"""

from codexgw.dialects.messages.errors import (
    error_type,
    estimate_tokens,
    messages_error_body,
    messages_error_status,
    stream_error_event,
    upstream_error,
)
from codexgw.dialects.messages.request_from_hub import (
    DEFAULT_MAX_TOKENS,
    MessagesRequest,
    responses_to_messages,
)
from codexgw.dialects.messages.request_to_hub import HubRequest, messages_to_responses
from codexgw.dialects.messages.stream_from_hub import ResponsesToMessages
from codexgw.dialects.messages.stream_to_hub import MessagesToResponses, message_as_event
from codexgw.dialects.spoke import Spoke

MESSAGES = Spoke(
    name="messages",
    path="/messages",
    requestToHub=messages_to_responses,
    streamFromHub=ResponsesToMessages,
    requestFromHub=responses_to_messages,
    streamToHub=MessagesToResponses,
    errorToHub=upstream_error,
    wholeToEvent=message_as_event,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MESSAGES",
    "HubRequest",
    "MessagesRequest",
    "MessagesToResponses",
    "ResponsesToMessages",
    "error_type",
    "estimate_tokens",
    "message_as_event",
    "messages_error_body",
    "messages_error_status",
    "messages_to_responses",
    "responses_to_messages",
    "stream_error_event",
    "upstream_error",
]
