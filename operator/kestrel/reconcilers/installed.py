"""Whether an optional add-on (KEDA, cert-manager, Argo Rollouts, the Prometheus Operator) is installed: its CRD,
asked once a minute; owns no condition.

Every pass of every model asked before; at a thousand models that was a request per pass for an answer that
changes when someone installs or removes an add-on. Both answers are kept for `TTL` seconds, so installing an
optional one (KEDA) is noticed within a minute. A spec that requires an add-on (`tls.mode: cert-manager`) asks again
while it is missing: that model is waiting for it, and its condition tells the user to install it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kestrel.reconcilers import context

CRD_API = "apiextensions.k8s.io/v1"
TTL = 60.0


class Answers:
    """CRD name -> (installed, when asked); thread-safe."""

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._found: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> bool | None:
        with self._lock:
            found = self._found.get(name)
        if found is None or self.clock() - found[1] >= self.ttl:
            return None
        return found[0]

    def put(self, name: str, installed: bool) -> None:
        with self._lock:
            self._found[name] = (installed, self.clock())


ANSWERS = Answers()


def crd(ctx: context.Context, name: str, answers: Answers | None = None, *, required: bool = False) -> bool:
    """True when the cluster serves the CustomResourceDefinition `name` (as known within the last `TTL` s).

    `required`: the spec needs the add-on, so a remembered "missing" is not trusted and the API server is asked.
    """
    answers = answers or ANSWERS
    known = answers.get(name)
    if known is None or (required and not known):
        known = ctx.kube.get(CRD_API, "CustomResourceDefinition", None, name) is not None
        answers.put(name, known)
    return known
