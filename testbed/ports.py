"""Loopback ports for the test bed's listeners, handed out once each.

Binding port 0 and closing the socket (the usual `free_port`) can hand the same port to two listeners of one pod
(the kernel picks at random and the first listener has not bound yet) and picks from the ephemeral range, where
every outgoing connection of the suite takes its local port too: a listener that lost that race fails to bind, and
the process kubelet restarts it on the same port for as long as the pod lives. Here ports come from a range below
the ephemeral one (and below the NodePort range), walked by one cursor per process from a random start, each
checked by a bind before it is handed out; a port is not handed out again until the cursor has gone round.
"""

from __future__ import annotations

import itertools
import random
import socket
import threading

# Below Linux's default ip_local_port_range (32768-60999) and Kubernetes' NodePort range (30000-32767).
RANGE = range(20000, 30000)

_lock = threading.Lock()
_walk = itertools.islice(itertools.cycle(RANGE), random.randrange(len(RANGE)), None)


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that no socket holds now and this process has not handed out in the last len(RANGE)."""
    with _lock:
        for _ in range(len(RANGE)):
            port = next(_walk)
            if _bindable(host, port):
                return port
    raise RuntimeError(f"no free port on {host} in {RANGE.start}-{RANGE.stop - 1}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
