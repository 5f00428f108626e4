"""
The Chat Completions spoke: requests to and from the hub, streams to and
from the hub, errors, tools and provider dialects. L{CHAT} is the spoke.
"""

from codexgw.dialects.chat.errors import upstream_error
from codexgw.dialects.chat.request_from_hub import responses_to_chat
from codexgw.dialects.chat.request_to_hub import chat_to_responses
from codexgw.dialects.chat.stream_from_hub import ResponsesToChat
from codexgw.dialects.chat.stream_to_hub import ChatToResponses, completion_as_chunk
from codexgw.dialects.spoke import Spoke

CHAT = Spoke(
    name="chat",
    path="/chat/completions",
    requestToHub=chat_to_responses,
    streamFromHub=ResponsesToChat,
    requestFromHub=responses_to_chat,
    streamToHub=ChatToResponses,
    errorToHub=upstream_error,
    wholeToEvent=completion_as_chunk,
)

__all__ = ["CHAT"]
