# -*- test-case-name: tests.test_tap -*-
"""
C{twistd codexgw}: command-line options and the service they make.
"""

from __future__ import annotations

import os
import sys

from twisted.application.service import IService
from twisted.python import usage

from codexgw.config import ConfigError, load
from codexgw.service import GatewayService


class Options(usage.Options):
    synopsis = "[--config FILE] [--listen ENDPOINT]"
    longdesc = (
        "Serve the codexgw gateway. With no configuration it serves the built-in "
        "offline demo model on 127.0.0.1:8080; set CODEXGW_UPSTREAM_URL (and "
        "CODEXGW_UPSTREAM_API_KEY) or pass --config to use a real provider."
    )
    optParameters = [
        ["config", "c", None, "YAML configuration file (default: $CODEXGW_CONFIG, else built-in)."],
        [
            "listen",
            "l",
            None,
            "Twisted endpoint to listen on, e.g. tcp:8080:interface=127.0.0.1 "
            "(overrides the config's listen).",
        ],
        [
            "drain-timeout",
            None,
            "30",
            "Seconds in-flight streams get to finish on shutdown.",
            float,
        ],
    ]


def makeService(options: Options) -> IService:
    try:
        config = load(options["config"])
    except ConfigError as e:
        # twistd would print a traceback; an operator needs the problems.
        sys.stderr.write(f"codexgw: {e}\n")
        raise SystemExit(os.EX_CONFIG) from None
    listen = options["listen"] or config.listen
    return GatewayService(config, listen=listen, drainTimeout=options["drain-timeout"])
