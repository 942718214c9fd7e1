"""The real client (kestrel.kube.client.Kube) and the unit suites' in-memory one (tests/unit/tls_fake_kube.FakeKube)
take every call of kestrel.kube.protocol.KubeApi with the protocol's parameters: names, kinds and defaults.

mypy already proves both satisfy the protocol's types, but not the rest: it accepts a positional parameter under
another name (a keyword call would then fail only at run time) and any default value (`force=False` in the fake
would test a different write than the operator makes)."""

from __future__ import annotations

import inspect

from kestrel.kube import client, protocol
from tests.unit.tls_fake_kube import FakeKube

# The fake's own test helpers, beyond the protocol.
ONLY_IN_FAKE = {"key", "put", "secret"}


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_both_clients_take_the_protocols_parameters() -> None:
    wanted = _methods(protocol.KubeApi)
    for implementation in (client.Kube, FakeKube):
        found = _methods(implementation)
        differ = {
            name: (str(wanted[name]), str(found[name]))
            for name in wanted
            if _shape(wanted[name]) != _shape(found[name])
        }
        assert not differ, (implementation.__name__, differ)


def test_the_fake_has_nothing_a_pass_could_call_that_the_protocol_lacks() -> None:
    assert set(_methods(FakeKube)) - set(_methods(protocol.KubeApi)) == ONLY_IN_FAKE
