"""
codexgw benchmark: the direct path, a bare twisted.web relay and the gateway,
measured in one run, side by side, with ratios.

    .venv/bin/python bench/run.py [--quick] [--json FILE]

Three processes are started on loopback: bench/fake_upstream.py (fast
asyncio), bench/bare_relay.py (the baseline) and `twistd -n codexgw`. On a
machine with two or more cores the relay under test is pinned to core 0 and
the load generator and upstream to core 1, so "per process" means one core.
Every loop is bounded in requests and in seconds; every process is stopped at
the end, also on error.
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
    def __init__(self, port: int) -> None:
        self.port = port
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
            b"Authorization: Bearer bench\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), len(body), body)
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
    ) -> subprocess.Popen[bytes]:
        def pin() -> None:
            os.setsid()
            if core is not None and self.cores > 1:
                os.sched_setaffinity(0, {core})

        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
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
        "bridged (POST /v1/responses -> Chat upstream) vs direct Chat stream:",
        f"  bridged streams/s, 20 events (c=32):    {br['streams20']['rps']:10.1f}   "
        f"(direct chat {d['stream20']['rps']:.1f}, ratio {br['streams20']['rps'] / d['stream20']['rps']:.2f})",
        f"  bridged TTFB p50/p99 ms:                {br['ttfb']['ttfb_p50_ms']:6.2f} / {br['ttfb']['ttfb_p99_ms']:6.2f}"
        f"   (direct {d['ttfb']['ttfb_p50_ms']:.2f} / {d['ttfb']['ttfb_p99_ms']:.2f})",
        f"  bridged events/s, 500-event stream:     {br['events500']['events_per_s']:10.0f}"
        f"   (direct {d['events500']['events_per_s']:.0f}, ratio "
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
    errors = sum(x["nonstream"]["errors"] + x["stream20"]["errors"] for x in (d, b, g))
    lines.append(f"errors during load: {errors + br['streams20']['errors']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per scenario instead of 5")
    parser.add_argument(
        "--streams", type=int, default=1000, help="concurrent slow streams (0 skips)"
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    procs = Processes()
    ports = {"upstream": freePort(), "bare": freePort(), "gateway": freePort()}
    upstreamCore, serverCore = (1, 0) if procs.cores > 1 else (None, None)
    if upstreamCore is not None:
        os.sched_setaffinity(0, {upstreamCore})
    dataDir = tempfile.mkdtemp(prefix="codexgw-bench-")
    configs = [
        gatewayConfig(
            ports["gateway"],
            ports["upstream"],
            f'store: {{backend: sqlite, path: "{dataDir}/r.sqlite3"}}\n',
        )
    ]
    try:
        procs.start(
            [PY, "bench/fake_upstream.py", str(ports["upstream"])],
            upstreamCore,
            listening(ports["upstream"]),
        )
        procs.start(
            [
                PY,
                "bench/bare_relay.py",
                str(ports["bare"]),
                f"http://127.0.0.1:{ports['upstream']}/v1",
            ],
            serverCore,
            listening(ports["bare"]),
        )
        gw = procs.start(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "--logger",
                "codexgw.obs.logs.textObserver",
                "codexgw",
                "--config",
                configs[0],
            ],
            serverCore,
            listening(ports["gateway"]),
        )
        time.sleep(0.5)
        idle = rss(gw.pid)
        print(
            f"pinning: server under test on core {serverCore}, upstream + load on core "
            f"{upstreamCore}; gateway pid {gw.pid}, idle RSS {idle:.1f} MB",
            flush=True,
        )
        res = asyncio.run(
            scenarios(
                {"direct": ports["upstream"], "bare": ports["bare"], "gateway": ports["gateway"]},
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
                    f'redis: {{url: "redis://127.0.0.1:{ports["redis"]}/0"}}\nstore: {{backend: redis}}\n',
                )
            )
            procs.start(
                [
                    TWISTD,
                    "-n",
                    "--pidfile=",
                    "--logger",
                    "codexgw.obs.logs.textObserver",
                    "codexgw",
                    "--config",
                    configs[1],
                ],
                serverCore,
                listening(ports["gateway_redis"]),
            )
            res["store_redis"] = asyncio.run(storedTurns(ports["gateway_redis"], 100))
        if args.streams:
            res["many"] = asyncio.run(manyStreams(ports["gateway"], gw.pid, args.streams))
    finally:
        procs.stop()
        for name in configs:
            os.unlink(name)
        shutil.rmtree(dataDir, ignore_errors=True)
    res["redaction"] = redactionCost()
    print(report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
