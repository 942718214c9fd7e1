"""reconcilers.installed: whether KEDA, cert-manager or Argo is installed is asked at most once per TTL."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kestrel.reconcilers import installed


class CountingKube:
    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.asked: list[str] = []

    def get(self, api_version: str, kind: str, namespace: str | None, name: str, **_: Any) -> dict[str, Any] | None:
        assert (api_version, kind, namespace) == (installed.CRD_API, "CustomResourceDefinition", None)
        self.asked.append(name)
        return {"metadata": {"name": name}} if name in self.present else None


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_both_answers_are_kept_until_the_ttl_and_then_asked_again() -> None:
    clock = Clock()
    answers = installed.Answers(ttl=60, clock=clock)
    kube = CountingKube({"certificates.cert-manager.io"})
    ctx: Any = SimpleNamespace(kube=kube)
    for _ in range(3):
        assert installed.crd(ctx, "certificates.cert-manager.io", answers) is True
        assert installed.crd(ctx, "scaledobjects.keda.sh", answers) is False
    assert kube.asked == ["certificates.cert-manager.io", "scaledobjects.keda.sh"]
    kube.present.add("scaledobjects.keda.sh")  # someone installs KEDA
    clock.now = 59
    assert installed.crd(ctx, "scaledobjects.keda.sh", answers) is False
    clock.now = 60
    assert installed.crd(ctx, "scaledobjects.keda.sh", answers) is True
    assert len(kube.asked) == 3


def test_a_required_add_on_that_is_missing_is_asked_again_every_time() -> None:
    answers = installed.Answers(ttl=60, clock=Clock())
    kube = CountingKube(set())
    ctx: Any = SimpleNamespace(kube=kube)
    assert installed.crd(ctx, "certificates.cert-manager.io", answers, required=True) is False
    kube.present.add("certificates.cert-manager.io")  # the user installs cert-manager, as the condition asked
    assert installed.crd(ctx, "certificates.cert-manager.io", answers, required=True) is True
    assert installed.crd(ctx, "certificates.cert-manager.io", answers, required=True) is True
    assert kube.asked == ["certificates.cert-manager.io", "certificates.cert-manager.io"]
