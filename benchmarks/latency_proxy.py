"""A TCP proxy on loopback that delays each direction by a fixed time.

This machine's kernel has no netem, so benchmarks put this between kong and a
container's sshd to see what a cluster 25 ms away costs. Every chunk read from
one side is written to the other ``delay`` seconds later, in order; reading
never waits for writing, so the delay adds latency without capping bandwidth.

    python benchmarks/latency_proxy.py --target 127.0.0.1:2222 --delay-ms 25
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time


class LatencyProxy:
    """Listens on 127.0.0.1:<port> and forwards to ``target`` with ``delay_ms`` each way."""

    def __init__(self, target_host: str, target_port: int, delay_ms: float) -> None:
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000
        self.port = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + self.delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w),
                                 return_exceptions=True)

    def start(self) -> int:
        """Start serving in a background thread; returns the port to connect to."""
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        return self.port

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="delay each way (ms)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    proxy = LatencyProxy(host, int(port), args.delay_ms)
    print(f"127.0.0.1:{proxy.start()} -> {args.target}, {args.delay_ms} ms each way", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
