"""The in-memory API of the unit suites (tests/unit/tls_fake_kube.FakeKube) still matches kestrel.kube.client.Kube:
every method both have takes the same parameters (names, kinds, defaults), and the ones only Kube has are the ones
listed here, which no unit suite's reconciler reaches. The test suites are not type-checked, so without this a
changed Kube signature would leave the fake answering calls the operator no longer makes."""

from __future__ import annotations

import inspect

from kestrel.kube import client
from tests.unit.tls_fake_kube import FakeKube

# Kube's methods the fake does not have: connection set-up, and calls made outside the passes the unit suites run
# (the drift check's observer, the handlers' annotation and status writes, Kopf's view of a model).
ONLY_IN_KUBE = {
    "annotate_model_deployment",
    "connect",
    "get_model_deployment",
    "observe",
    "patch_status",
    "remove_model_deployment_annotation",
    "replace",
    "view",
}
# The fake's own test helpers.
ONLY_IN_FAKE = {"key", "put", "secret"}


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_every_shared_method_takes_the_same_parameters() -> None:
    real, fake = _methods(client.Kube), _methods(FakeKube)
    assert set(real) - set(fake) == ONLY_IN_KUBE
    assert set(fake) - set(real) == ONLY_IN_FAKE
    differ = {
        name: (str(real[name]), str(fake[name]))
        for name in set(real) & set(fake)
        if _shape(real[name]) != _shape(fake[name])
    }
    assert not differ, differ
