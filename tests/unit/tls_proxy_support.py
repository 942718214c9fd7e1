"""Kestrel's TLS proxy run in-process for tests: on its own event loop in a thread, on ports the kernel picks."""

from __future__ import annotations

import asyncio
import threading

from kestrel.serving import tls_proxy


class Running:
    """A proxy on its own loop in a thread."""

    def __init__(self, config: tls_proxy.Config) -> None:
        self.proxy: tls_proxy.Proxy | None = None
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main() -> None:
            self.proxy = tls_proxy.Proxy(config)
            await self.proxy.start()
            started.set()
            await self.proxy.serve()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def port(self, listener: str) -> int:
        assert self.proxy is not None
        return self.proxy.ports[listener]

    def close(self) -> None:
        assert self.proxy is not None
        self.loop.call_soon_threadsafe(self.proxy.stop)
        self.thread.join(10)
