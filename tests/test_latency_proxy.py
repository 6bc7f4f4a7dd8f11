"""The benchmarks' latency injector delays both directions and loses nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.latency_proxy import LatencyProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def echo(c: socket.socket) -> None:
                with c:
                    while data := c.recv(65536):
                        c.sendall(data)

            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def _round_trip(port: int, payload: bytes) -> tuple[float, bytes]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.monotonic()
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += sock.recv(65536)
        return time.monotonic() - start, received


def test_round_trip_takes_twice_the_delay_and_keeps_bytes(echo_port: int) -> None:
    proxy = LatencyProxy("127.0.0.1", echo_port, delay_ms=50)
    port = proxy.start()
    try:
        payload = bytes(range(256)) * 4096  # 1 MiB, several chunks
        elapsed, received = _round_trip(port, payload)
        assert received == payload
        assert elapsed >= 0.1
        small, _ = _round_trip(port, b"ping")
        assert 0.1 <= small < 0.5
    finally:
        proxy.stop()


def test_zero_delay_is_fast(echo_port: int) -> None:
    proxy = LatencyProxy("127.0.0.1", echo_port, delay_ms=0)
    port = proxy.start()
    try:
        elapsed, received = _round_trip(port, b"x" * 1000)
        assert received == b"x" * 1000
        assert elapsed < 0.05
    finally:
        proxy.stop()
