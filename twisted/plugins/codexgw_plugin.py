"""
The C{twistd codexgw} and C{twistd codexgw-demo} plugins: only
L{ServiceMaker}s; the work is in L{codexgw.tap} and L{codexgw.demo.tap}.
"""

from twisted.application.service import ServiceMaker

codexgw = ServiceMaker(
    "codexgw",
    "codexgw.tap",
    "Gateway bridging OpenAI's Responses API and Chat Completions upstreams.",
    "codexgw",
)

codexgwDemo = ServiceMaker(
    "codexgw-demo",
    "codexgw.demo.tap",
    "The offline demo model (codexgw-demo) alone, as a Chat Completions upstream.",
    "codexgw-demo",
)
