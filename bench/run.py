"""
codexgw benchmark: the direct path, a bare twisted.web relay and the gateway,
measured in one run, side by side, with ratios.

    .venv/bin/python bench/run.py [--quick] [--json FILE] [--no-floor]
    .venv/bin/python bench/run.py --floor      # only the floor section (~45 s)

Three processes are started on loopback: bench/fake_upstream.py (fast
asyncio), bench/bare_relay.py (the baseline) and `twistd -n codexgw`. On a
machine with two or more cores the relay under test is pinned to core 0 and
the load generator and upstream to core 1, so "per process" means one core.
Every loop is bounded in requests and in seconds; every process is stopped at
the end, also on error.

The floor section (issue 15) starts one more gateway, with everything a
deployment turns on (a gateway key, rate limits, metrics, the access log,
redaction), and compares it with the bare relay at 16 connections over three
interleaved rounds: see FLOOR_* below for its targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import websocket_rows as websocket  # noqa: E402  (beside this file)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TWISTD = os.path.join(os.path.dirname(PY), "twistd")


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> float:
    """Resident memory of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- a small, fast HTTP/1.1 client ---------------------------------------------


class Conn:
    def __init__(self, port: int, auth: bytes = b"bench") -> None:
        self.port = port
        self.auth = auth
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, limit=2**22
        )

    async def post(self, path: str, body: bytes) -> tuple[int, float, float, int]:
        """(status, seconds to first body byte, seconds to end, events) for one POST."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        start = time.perf_counter()
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self.auth, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        events = 0
        first = 0.0
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                data = await self.reader.readexactly(size + 2)
                if not first:
                    first = time.perf_counter() - start
                events += data.count(b"data: ")
        else:
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.find(b"\r\n", at)])
            await self.reader.readexactly(length)
            first = time.perf_counter() - start
        return status, first, time.perf_counter() - start, events

    async def fetch(self, path: str, body: bytes) -> tuple[int, float, float, int]:
        """
        L{post}, reading in 64 KB blocks and parsing the chunked body from the
        buffer: a 200-chunk stream costs the load generator a few reads, not
        400 awaits, so at c=16 it stays far from being the bottleneck. Same
        tuple; the first byte is timed at the first whole body chunk.
        """
        if self.writer is None:
            await self.open()
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        perf = time.perf_counter
        start = perf()
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self.auth, len(body), body)
        )
        buf = b""
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += await self._more(reader)
        head, buf = buf[:end].lower(), buf[end + 4 :]
        status = int(head[9:12])
        first = 0.0
        events = 0
        if b"transfer-encoding: chunked" in head:
            pos = 0
            while True:
                nl = buf.find(b"\r\n", pos)
                if nl >= 0:
                    size = int(buf[pos:nl], 16)
                    stop = nl + 2 + size + 2
                    if len(buf) >= stop:
                        if size == 0:
                            break
                        if not first:
                            first = perf() - start
                        events += buf.count(b"data: ", nl + 2, stop)
                        pos = stop
                        continue
                buf = buf[pos:] + await self._more(reader)
                pos = 0
        else:
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            while len(buf) < length:
                buf += await self._more(reader)
            first = perf() - start
        return status, first, perf() - start, events

    @staticmethod
    async def _more(reader: asyncio.StreamReader) -> bytes:
        data = await reader.read(65536)
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        return data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def load(
    port: int, path: str, body: bytes, concurrency: int, seconds: float, maxRequests: int = 200_000
) -> dict[str, float]:
    """Requests/s and latency with C{concurrency} keep-alive connections."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = Conn(port)
        try:
            while time.perf_counter() < deadline and len(latencies) < maxRequests:
                status, _, total, _ = await conn.post(path, body)
                if status != 200:
                    errors += 1
                latencies.append(total)
        except (ConnectionError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "errors": errors,
    }


async def sequential(
    port: int, path: str, body: bytes, count: int, seconds: float
) -> dict[str, float]:
    """TTFB and events/s for streams one after another."""
    conn = Conn(port)
    ttfb: list[float] = []
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    try:
        for _ in range(count):
            if time.perf_counter() > deadline:
                break
            status, first, total, events = await conn.post(path, body)
            ttfb.append(first)
            rates.append(events / total if total else 0.0)
    finally:
        conn.close()
    return {
        "ttfb_p50_ms": pct(ttfb, 50) * 1000,
        "ttfb_p99_ms": pct(ttfb, 99) * 1000,
        "events_per_s": statistics.median(rates) if rates else 0.0,
    }


# -- processes -----------------------------------------------------------------


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cores = os.cpu_count() or 1

    def start(
        self,
        args: list[str],
        core: int | None,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        stdout: Any = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        def pin() -> None:
            os.setsid()
            if core is not None and self.cores > 1:
                os.sched_setaffinity(0, {core})

        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
            preexec_fn=pin,
            env=env or os.environ.copy(),
        )
        self.procs.append(proc)
        deadline = time.time() + 20
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[1:3]} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if ready():
                return proc
            time.sleep(0.05)
        raise RuntimeError(f"{args} did not start")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def listening(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    return check


# -- the run -------------------------------------------------------------------


def chatBody(model: str, stream: bool) -> bytes:
    return json.dumps(
        {
            "model": model,
            "stream": stream,
            "stream_options": {"include_usage": True} if stream else None,
            "messages": [{"role": "user", "content": "Say something short."}],
        }
    ).encode()


def responsesBody(model: str) -> bytes:
    return json.dumps(
        {"model": model, "input": "Say something short.", "stream": True, "store": False}
    ).encode()


async def scenarios(ports: dict[str, int], quick: bool) -> dict[str, Any]:
    secs = 2.0 if quick else 5.0
    out: dict[str, Any] = {}
    chat = "/v1/chat/completions"
    for name, port in ports.items():
        await load(port, chat, chatBody("bench", False), 8, 0.5)  # warm pools
        r: dict[str, Any] = {}
        r["nonstream"] = await load(port, chat, chatBody("bench", False), 32, secs)
        r["stream20"] = await load(port, chat, chatBody("bench-20", True), 32, secs)
        r["ttfb"] = await sequential(port, chat, chatBody("bench-20", True), 300, secs)
        r["events500"] = await sequential(port, chat, chatBody("bench-500", True), 40, secs)
        out[name] = r
    gw = ports["gateway"]
    out["bridge"] = {
        "streams20": await load(gw, "/v1/responses", responsesBody("bench-20"), 32, secs),
        "ttfb": await sequential(gw, "/v1/responses", responsesBody("bench-20"), 300, secs),
        "events500": await sequential(gw, "/v1/responses", responsesBody("bench-500"), 40, secs),
    }
    return out


async def manyStreams(port: int, pid: int, count: int) -> dict[str, float]:
    """C{count} slow streams open at once through one gateway process."""
    peak = rss(pid)
    before = peak
    done = 0
    failures = 0
    stop = False

    async def watch() -> None:
        nonlocal peak
        while not stop:
            peak = max(peak, rss(pid))
            await asyncio.sleep(0.05)

    async def one() -> None:
        nonlocal done, failures
        conn = Conn(port)
        try:
            status, _, _, events = await conn.post(
                "/v1/chat/completions", chatBody("slow-20-150ms", True)
            )
            if status == 200 and events >= 20:
                done += 1
            else:
                failures += 1
        except Exception:
            failures += 1
        finally:
            conn.close()

    watcher = asyncio.ensure_future(watch())
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*[one() for _ in range(count)]), timeout=120)
    elapsed = time.perf_counter() - started
    stop = True
    await watcher
    return {
        "streams": count,
        "completed": done,
        "failed": failures,
        "seconds": elapsed,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "rss_per_stream_kb": (peak - before) * 1024 / count,
    }


async def storedTurns(port: int, count: int) -> dict[str, float]:
    """Non-streamed bridged turns, one at a time: stored vs store: false."""
    out: dict[str, float] = {}
    for label, store in (("unstored", False), ("stored", True)):
        conn = Conn(port)
        times: list[float] = []
        try:
            for _ in range(count):
                body = json.dumps({"model": "bench-20", "input": "hi", "store": store}).encode()
                status, _, total, _ = await conn.post("/v1/responses", body)
                if status == 200:
                    times.append(total)
        finally:
            conn.close()
        out[label + "_p50_ms"] = pct(times, 50) * 1000
    out["added_ms"] = out["stored_p50_ms"] - out["unstored_p50_ms"]
    return out


BENCH_KEY = "sk-bench-upstream-0123456789abcdefghijkl"


def redactionCost() -> dict[str, float]:
    """
    The redactor alone, in this process: what each written piece costs
    (a bridged SSE event, a Chat chunk, a whole JSON answer), with the three
    secrets a typical config holds. The end-to-end rows above run with it on.
    """
    sys.path.insert(0, ROOT)
    from codexgw.obs.redaction import Redactor

    redactor = Redactor([BENCH_KEY, "sk-second-upstream-key-000000000", "gw-team-key-1234567890"])
    event = (
        b"event: response.output_text.delta\ndata: "
        b'{"type":"response.output_text.delta","sequence_number":12,"item_id":"msg_1",'
        b'"output_index":0,"content_index":0,"delta":" token","logprobs":[]}\n\n'
    )
    body = b'{"id":"chatcmpl-1","choices":[{"message":{"content":"' + b"word " * 2000 + b'"}}]}'
    out: dict[str, float] = {}
    for name, data, n in (("event", event, 200_000), ("body_10kb", body, 20_000)):
        stream = redactor.stream()
        feed = stream.feed
        started = time.perf_counter()
        for _ in range(n):
            feed(data)
        elapsed = time.perf_counter() - started
        out[name + "_ns"] = elapsed / n * 1e9
        out[name + "_mb_s"] = len(data) * n / elapsed / 1e6
    return out


def gatewayConfig(port: int, upstream: int, extra: str = "") -> str:
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    config.write(
        f'listen: "tcp:{port}:interface=127.0.0.1:backlog=4096"\n'
        "upstreams:\n  main:\n"
        f'    base_url: "http://127.0.0.1:{upstream}/v1"\n'
        "    wire_api: chat\n"
        # A credential, so every answer goes through the redactor, as in
        # production (the fake upstream ignores it).
        f'    api_key: "{BENCH_KEY}"\n'
        "default_upstream: main\n" + extra
    )
    config.close()
    return config.name


# -- the floor (issue 15) -------------------------------------------------------
#
# codexgw with everything on (gateway keys, rate limits, metrics, the access
# log, redaction) against bare_relay.py, both pinned to core 0, the load and
# the upstream on core 1; 16 connections; three interleaved rounds (gw, bare,
# gw, bare, gw, bare), medians. Targets: gw/bare >= 0.9 for non-streamed
# req/s and for 200-chunk streams/s, and at most 0.3 ms added to the first
# byte.

FLOOR_KEY = "gw-bench-floor-key-0123456789abcdef"
FLOOR_CONCURRENCY = 16
FLOOR_ROUNDS = 3
FLOOR_RATIO = 0.9
FLOOR_TTFB_MS = 0.3


def floorConfig(port: int, upstream: int, dataDir: str) -> str:
    """The gateway as deployed: a key, limits (too high to refuse), a store."""
    return gatewayConfig(
        port,
        upstream,
        "auth:\n  keys:\n"
        f'    - {{name: bench, key: "{FLOOR_KEY}"}}\n'
        "rate_limits:\n  requests_per_minute: 1000000000\n  tokens_per_minute: 1000000000000\n"
        f'store: {{backend: sqlite, path: "{dataDir}/floor.sqlite3"}}\n',
    )


def cpuSeconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def floorLoad(
    port: int,
    pid: int,
    body: bytes,
    seconds: float,
    minEvents: int = 0,
    concurrency: int = FLOOR_CONCURRENCY,
    maxRequests: int = 100_000,
) -> dict[str, float]:
    """Answers/s, TTFB p50 and the server's CPU use, C{concurrency} keep-alive connections."""
    count = 0
    ttfb: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count, errors
        conn = Conn(port, FLOOR_KEY.encode())
        try:
            while time.perf_counter() < deadline and count < maxRequests:
                status, first, _, events = await conn.fetch("/v1/chat/completions", body)
                count += 1
                ttfb.append(first)
                if status != 200 or events < minEvents:
                    errors += 1
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        finally:
            conn.close()

    cpu = cpuSeconds(pid)
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*[worker() for _ in range(concurrency)]), timeout=seconds + 30
    )
    elapsed = time.perf_counter() - started
    cpu = cpuSeconds(pid) - cpu
    return {
        "rps": count / elapsed,
        "ttfb_p50_ms": pct(ttfb, 50) * 1000,
        "server_cpu": cpu / elapsed,
        "cpu_us": cpu / count * 1e6 if count else float("nan"),
        "errors": errors,
        "requests": count,
    }


async def floorRounds(
    targets: dict[str, tuple[int, int]], seconds: float, rounds: int = FLOOR_ROUNDS
) -> dict[str, Any]:
    """
    C{rounds} interleaved rounds over C{targets} (name: (port, pid)); each
    round measures non-streamed answers, 200-chunk streams (both at c=16)
    and the time to first byte of one 200-chunk stream at a time (c=1).
    """
    plain = chatBody("bench", False)
    stream = chatBody("bench-200", True)
    for port, pid in targets.values():  # warm the pools
        await floorLoad(port, pid, plain, 0.3)
        await floorLoad(port, pid, stream, 0.3, 200)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"nonstream": [], "stream200": [], "ttfb": []} for name in targets
    }
    for _ in range(rounds):
        for name, (port, pid) in targets.items():
            runs[name]["nonstream"].append(await floorLoad(port, pid, plain, seconds))
            runs[name]["stream200"].append(await floorLoad(port, pid, stream, seconds, 200))
            runs[name]["ttfb"].append(await floorLoad(port, pid, stream, seconds / 3, 200, 1, 2000))
    out: dict[str, Any] = {"rounds": runs, "seconds": seconds}
    for name, kinds in runs.items():
        out[name] = {
            kind: {
                key: statistics.median(r[key] for r in results)
                for key in ("rps", "ttfb_p50_ms", "server_cpu", "cpu_us")
            }
            | {"errors": sum(r["errors"] for r in results)}
            for kind, results in kinds.items()
        }
    return out


def floorReport(res: dict[str, Any]) -> str:
    g, b = res["gateway"], res["bare"]
    ns = g["nonstream"]["rps"] / b["nonstream"]["rps"]
    st = g["stream200"]["rps"] / b["stream200"]["rps"]
    added = g["ttfb"]["ttfb_p50_ms"] - b["ttfb"]["ttfb_p50_ms"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    def rounds(name: str, kind: str, key: str, fmt: str) -> str:
        return " ".join(fmt.format(r[key]) for r in res["rounds"][name][kind])

    lines = [
        "floor (issue 15): codexgw with keys, rate limits, metrics, access log and redaction on,",
        f"vs bare_relay.py; both on core 0, load + upstream on core 1; medians of "
        f"{len(res['rounds']['gateway']['nonstream'])} interleaved rounds of {res['seconds']:.1f} s",
        f"{'':38} {'bare':>9} {'codexgw':>9} {'gw/bare':>8}  target",
        f"{'non-streamed req/s (c=16)':38} {b['nonstream']['rps']:9.1f} {g['nonstream']['rps']:9.1f} "
        f"{ns:8.2f}  >= {FLOOR_RATIO:.1f}x {verdict(ns >= FLOOR_RATIO)}",
        f"{'streams/s, 200 chunks (c=16)':38} {b['stream200']['rps']:9.1f} {g['stream200']['rps']:9.1f} "
        f"{st:8.2f}  >= {FLOOR_RATIO:.1f}x {verdict(st >= FLOOR_RATIO)}",
        f"{'TTFB p50 ms, 200-chunk stream (c=1)':38} {b['ttfb']['ttfb_p50_ms']:9.3f} "
        f"{g['ttfb']['ttfb_p50_ms']:9.3f} {added:+8.3f}  <= {FLOOR_TTFB_MS} ms added "
        f"{verdict(added <= FLOOR_TTFB_MS)}",
        f"  TTFB p50 ms under the c=16 stream load: bare {b['stream200']['ttfb_p50_ms']:.2f}, "
        f"codexgw {g['stream200']['ttfb_p50_ms']:.2f}",
        "  per round (gw | bare):",
        f"    non-streamed req/s  {rounds('gateway', 'nonstream', 'rps', '{:7.0f}')} | "
        f"{rounds('bare', 'nonstream', 'rps', '{:7.0f}')}",
        f"    streams/s           {rounds('gateway', 'stream200', 'rps', '{:7.1f}')} | "
        f"{rounds('bare', 'stream200', 'rps', '{:7.1f}')}",
        f"    TTFB p50 ms         {rounds('gateway', 'ttfb', 'ttfb_p50_ms', '{:7.3f}')} | "
        f"{rounds('bare', 'ttfb', 'ttfb_p50_ms', '{:7.3f}')}",
        f"  server CPU (1.00 = its core saturated): non-streamed gw {g['nonstream']['server_cpu']:.2f} "
        f"bare {b['nonstream']['server_cpu']:.2f}; streams gw {g['stream200']['server_cpu']:.2f} "
        f"bare {b['stream200']['server_cpu']:.2f}",
    ]
    lines.append(
        f"  server CPU per answer, us (steadier than req/s when other load shares the cores): "
        f"non-streamed gw {g['nonstream']['cpu_us']:.0f} bare {b['nonstream']['cpu_us']:.0f} "
        f"(bare/gw {b['nonstream']['cpu_us'] / g['nonstream']['cpu_us']:.2f}); streams gw "
        f"{g['stream200']['cpu_us']:.0f} bare {b['stream200']['cpu_us']:.0f} "
        f"(bare/gw {b['stream200']['cpu_us'] / g['stream200']['cpu_us']:.2f})"
    )
    starved = min(x[k]["server_cpu"] for x in (g, b) for k in ("nonstream", "stream200"))
    if starved < 0.9:
        lines.append(
            f"  WARNING: a server under load used {starved:.2f} of its core: something else ran "
            "on core 0 or 1, so these ratios say little; rerun on a quiet machine"
        )
    for key in ("checks", "loadavg"):
        if key in res:
            lines.append(f"  {key}: {res[key]}")
    errors = sum(x[k]["errors"] for x in (g, b) for k in ("nonstream", "stream200", "ttfb"))
    lines.append(f"  errors during the floor: {errors}")
    return "\n".join(lines)


def floorChecks(port: int, accessLog: str) -> str:
    """Evidence that the floor's gateway had its features on: log lines, metrics."""
    import urllib.request

    with open(accessLog, "rb") as f:
        lines = sum(1 for line in f if b"[codexgw.access#" in line)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    counted = sum(
        float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith("codexgw_requests_total{") and 'status="200"' in line
    )
    tokens = sum(
        float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith("codexgw_tokens_total{") and 'key="bench"' in line
    )
    return (
        f"{lines} access lines, {counted:.0f} requests counted in /metrics, "
        f"{tokens:.0f} tokens on key 'bench'"
    )


def report(res: dict[str, Any]) -> str:
    d, b, g = res["direct"], res["bare"], res["gateway"]
    lines = [
        f"{'metric':44} {'direct':>10} {'bare relay':>11} {'codexgw':>10} {'gw/bare':>8} {'gw/direct':>9}",
    ]

    def row(label: str, key: tuple[str, str], higherBetter: bool, fmt: str = "{:10.1f}") -> None:
        dv, bv, gv = d[key[0]][key[1]], b[key[0]][key[1]], g[key[0]][key[1]]
        lines.append(
            f"{label:44} {fmt.format(dv)} {fmt.format(bv):>11} {fmt.format(gv)} "
            f"{gv / bv if bv else float('nan'):8.2f} {gv / dv if dv else float('nan'):9.2f}"
        )

    row("non-streamed req/s (c=32)", ("nonstream", "rps"), True)
    row("non-streamed latency p50 ms (c=32)", ("nonstream", "p50_ms"), False, "{:10.2f}")
    row("non-streamed latency p99 ms (c=32)", ("nonstream", "p99_ms"), False, "{:10.2f}")
    row("streams/s, 20 events (c=32)", ("stream20", "rps"), True)
    row("stream time to first byte p50 ms (c=1)", ("ttfb", "ttfb_p50_ms"), False, "{:10.2f}")
    row("stream time to first byte p99 ms (c=1)", ("ttfb", "ttfb_p99_ms"), False, "{:10.2f}")
    row("SSE events/s relayed, 500-event stream", ("events500", "events_per_s"), True, "{:10.0f}")
    br = res["bridge"]
    lines += [
        "",
        "bridged (POST /v1/responses -> Chat upstream) vs the same stream passed through by",
        "codexgw (POST /v1/chat/completions, target: bridged/pass-through >= 0.5) and direct:",
        f"  bridged streams/s, 20 events (c=32):    {br['streams20']['rps']:10.1f}   "
        f"(passed through {g['stream20']['rps']:.1f}, ratio "
        f"{br['streams20']['rps'] / g['stream20']['rps']:.2f}; "
        f"direct chat {d['stream20']['rps']:.1f}, ratio {br['streams20']['rps'] / d['stream20']['rps']:.2f})",
        f"  bridged TTFB p50/p99 ms:                {br['ttfb']['ttfb_p50_ms']:6.2f} / {br['ttfb']['ttfb_p99_ms']:6.2f}"
        f"   (direct {d['ttfb']['ttfb_p50_ms']:.2f} / {d['ttfb']['ttfb_p99_ms']:.2f})",
        f"  bridged events/s, 500-event stream:     {br['events500']['events_per_s']:10.0f}"
        f"   (passed through {g['events500']['events_per_s']:.0f}, ratio "
        f"{br['events500']['events_per_s'] / g['events500']['events_per_s']:.2f}; "
        f"direct {d['events500']['events_per_s']:.0f}, ratio "
        f"{br['events500']['events_per_s'] / d['events500']['events_per_s']:.2f})",
        "",
        f"gateway RSS idle after start: {res['rss_idle_mb']:.1f} MB; after the load: {res['rss_after_mb']:.1f} MB",
    ]
    many = res.get("many")
    if many:
        lines.append(
            f"{many['streams']} concurrent slow streams (20 events, 3 s each): {many['completed']} completed, "
            f"{many['failed']} failed in {many['seconds']:.1f} s; RSS {many['rss_before_mb']:.1f} -> "
            f"peak {many['peak_rss_mb']:.1f} MB ({many['rss_per_stream_kb']:.1f} KB per stream)"
        )
    red = res.get("redaction")
    if red:
        lines.append(
            f"redaction (3 secrets): {red['event_ns']:.0f} ns per bridged SSE event "
            f"({red['event_mb_s']:.0f} MB/s), {red['body_10kb_ns'] / 1000:.1f} us per 10 KB body "
            f"({red['body_10kb_mb_s']:.0f} MB/s)"
        )
    for backend in ("sqlite", "redis"):
        st = res.get("store_" + backend)
        if st:
            lines.append(
                f"stored turn vs unstored ({backend}): p50 {st['stored_p50_ms']:.2f} ms vs "
                f"{st['unstored_p50_ms']:.2f} ms, added {st['added_ms']:+.2f} ms"
            )
    lines += websocket.report(res.get("ws_memory"), res.get("ws_loop"))
    errors = sum(x["nonstream"]["errors"] + x["stream20"]["errors"] for x in (d, b, g))
    lines.append(f"errors during load: {errors + br['streams20']['errors']}")
    return "\n".join(lines)


def gatewayArgs(config: str) -> list[str]:
    return [
        TWISTD,
        "-n",
        "--pidfile=",
        "--logger",
        "codexgw.obs.logs.textObserver",
        "codexgw",
        "--config",
        config,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per scenario instead of 5")
    parser.add_argument(
        "--streams", type=int, default=1000, help="concurrent slow streams (0 skips)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="only the floor: everything-on codexgw vs the bare relay (issue 15 targets)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor section of the full run"
    )
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=None,
        help="seconds per floor measurement (default 3, 1.5 with --quick)",
    )
    parser.add_argument(
        "--sockets", type=int, default=1000, help="open WebSockets for the memory row (0 skips)"
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    floorSeconds = args.floor_seconds or (1.5 if args.quick else 3.0)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    procs = Processes()
    ports = {"upstream": freePort(), "bare": freePort(), "gateway": freePort()}
    upstreamCore, serverCore = (1, 0) if procs.cores > 1 else (None, None)
    if upstreamCore is not None:
        os.sched_setaffinity(0, {upstreamCore})
    dataDir = tempfile.mkdtemp(prefix="codexgw-bench-")
    configs: list[str] = []
    res: dict[str, Any] = {}
    try:
        procs.start(
            [PY, "bench/fake_upstream.py", str(ports["upstream"])],
            upstreamCore,
            listening(ports["upstream"]),
        )
        bare = procs.start(
            [
                PY,
                "bench/bare_relay.py",
                str(ports["bare"]),
                f"http://127.0.0.1:{ports['upstream']}/v1",
            ],
            serverCore,
            listening(ports["bare"]),
        )
        if not args.floor:
            configs.append(
                gatewayConfig(
                    ports["gateway"],
                    ports["upstream"],
                    f'store: {{backend: sqlite, path: "{dataDir}/r.sqlite3"}}\n',
                )
            )
            gw = procs.start(gatewayArgs(configs[-1]), serverCore, listening(ports["gateway"]))
            time.sleep(0.5)
            idle = rss(gw.pid)
            print(
                f"pinning: server under test on core {serverCore}, upstream + load on core "
                f"{upstreamCore}; gateway pid {gw.pid}, idle RSS {idle:.1f} MB",
                flush=True,
            )
            res = asyncio.run(
                scenarios(
                    {
                        "direct": ports["upstream"],
                        "bare": ports["bare"],
                        "gateway": ports["gateway"],
                    },
                    args.quick,
                )
            )
            res["rss_idle_mb"] = idle
            res["rss_after_mb"] = rss(gw.pid)
            res["store_sqlite"] = asyncio.run(storedTurns(ports["gateway"], 100))
            redisServer = shutil.which("redis-server")
            if redisServer:
                ports["redis"], ports["gateway_redis"] = freePort(), freePort()
                procs.start(
                    [
                        redisServer,
                        "--port",
                        str(ports["redis"]),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    upstreamCore,
                    listening(ports["redis"]),
                )
                configs.append(
                    gatewayConfig(
                        ports["gateway_redis"],
                        ports["upstream"],
                        f'redis: {{url: "redis://127.0.0.1:{ports["redis"]}/0"}}\n'
                        "store: {backend: redis}\n",
                    )
                )
                procs.start(gatewayArgs(configs[-1]), serverCore, listening(ports["gateway_redis"]))
                res["store_redis"] = asyncio.run(storedTurns(ports["gateway_redis"], 100))
            if args.streams:
                res["many"] = asyncio.run(manyStreams(ports["gateway"], gw.pid, args.streams))
            if args.sockets:
                # A gateway of its own: one that has served the load above
                # would put the sockets in memory the load freed.
                ports["gateway_ws"] = freePort()
                configs.append(
                    gatewayConfig(
                        ports["gateway_ws"],
                        ports["upstream"],
                        f'store: {{backend: sqlite, path: "{dataDir}/ws.sqlite3"}}\n',
                    )
                )
                wsGw = procs.start(
                    gatewayArgs(configs[-1]), serverCore, listening(ports["gateway_ws"])
                )
                time.sleep(0.5)
                res["ws_memory"] = asyncio.run(
                    websocket.socketMemory(ports["gateway_ws"], lambda: rss(wsGw.pid), args.sockets)
                )
            res["ws_loop"] = asyncio.run(
                websocket.toolLoop(ports["gateway"], 20, lambda: cpuSeconds(gw.pid))
            )
        if args.floor or not args.no_floor:
            ports["gateway_floor"] = freePort()
            configs.append(floorConfig(ports["gateway_floor"], ports["upstream"], dataDir))
            accessLog = os.path.join(dataDir, "floor-access.log")
            with open(accessLog, "wb") as logFile:
                floorGw = procs.start(
                    gatewayArgs(configs[-1]),
                    serverCore,
                    listening(ports["gateway_floor"]),
                    stdout=logFile,
                )
            print(
                f"floor: codexgw pid {floorGw.pid} and bare relay pid {bare.pid} on core "
                f"{serverCore}, load + upstream on core {upstreamCore}; "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            floor = asyncio.run(
                floorRounds(
                    {
                        "gateway": (ports["gateway_floor"], floorGw.pid),
                        "bare": (ports["bare"], bare.pid),
                    },
                    floorSeconds,
                )
            )
            floor["checks"] = floorChecks(ports["gateway_floor"], accessLog)
            floor["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg()) + (
                f" on {procs.cores} cores (other load on the machine makes the numbers noisy)"
            )
            res["floor"] = floor
    finally:
        procs.stop()
        for name in configs:
            os.unlink(name)
        shutil.rmtree(dataDir, ignore_errors=True)
    if not args.floor:
        res["redaction"] = redactionCost()
        print(report(res))
    if "floor" in res:
        if not args.floor:
            print()
        print(floorReport(res["floor"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
