"""
The C{twistd codexgw} plugin: only a L{ServiceMaker}; the work is in L{codexgw.tap}.
"""

from twisted.application.service import ServiceMaker

codexgw = ServiceMaker(
    "codexgw",
    "codexgw.tap",
    "Gateway bridging OpenAI's Responses API and Chat Completions upstreams.",
    "codexgw",
)
