"""The test bed's port allocator hands out distinct ports below the ephemeral range, and none a listener holds."""

from __future__ import annotations

import socket

from testbed import ports


def test_ports_are_distinct_below_the_ephemeral_range_and_bindable() -> None:
    handed = [ports.free_port() for _ in range(200)]
    assert len(set(handed)) == len(handed)
    assert all(ports.RANGE.start <= port < ports.RANGE.stop < 32768 for port in handed)
    for port in handed[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_a_listener_holds_is_skipped() -> None:
    start = ports.free_port()
    following = start + 1 if start + 1 < ports.RANGE.stop else ports.RANGE.start
    with socket.socket() as blocked:  # a listener on the port the walk reaches next: it must step over it
        blocked.bind(("127.0.0.1", following))
        blocked.listen()
        assert ports.free_port() != following
