"""moto's S3 behind a switch, for chaos runs: the daemon talks to the proxy, the test flips it.

Modes: ``up`` forwards every request; ``down`` drops connections without an answer; ``slowdown``
answers 503 SlowDown as S3 does under load; ``hang`` holds each request open until the mode
changes, then drops it (a stalled connection, seen by the client as a timeout or a reset).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import aiohttp
from aiohttp import web

MODES = ("up", "down", "slowdown", "hang")
HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyS3:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "up"
        self.faulted: Counter[str] = Counter()  # requests that met each fault mode
        self._held: list[asyncio.Event] = []  # requests hanging until the mode changes
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="faulty-s3", daemon=True)
        self.url = ""

    def set(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        if mode != "hang":
            self._loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        for held in self._held:
            held.set()
        self._held.clear()

    def start(self) -> FaultyS3:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        if mode != "up":
            self.faulted[mode] += 1
        if mode == "hang":
            held = asyncio.Event()
            self._held.append(held)
            if self.mode != "hang":  # changed while this request arrived
                held.set()
            await held.wait()
        if mode in ("down", "hang"):
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        if mode == "slowdown":
            return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as answer:
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=payload, headers=kept)
