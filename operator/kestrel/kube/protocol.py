"""What a reconcile pass may ask of the API server: the calls `reconcilers/` make through `context.Context.kube`.

`client.Kube` is the implementation; the unit suites pass an in-memory one (tests/unit/tls_fake_kube.FakeKube), and
mypy checks both against this. Connection set-up, per-pass views and the watch's bookkeeping (`Kube.connect`,
`Kube.view`, `Kube.observe`) are not part of it: only the code that schedules passes calls those, on a `client.Kube`.
"""

from __future__ import annotations

from typing import Any, Protocol

Body = dict[str, Any]


class KubeApi(Protocol):
    def apply(self, body: Body, *, force: bool = True) -> Body: ...

    def adopt(self, found: Body, owner: str) -> None: ...

    def create(self, body: Body) -> Body: ...

    def get(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        cached: bool = False,
        trust: float = 0.0,
    ) -> Body | None: ...

    def list(self, api_version: str, kind: str, namespace: str | None, *, labels: str | None = None) -> list[Body]: ...

    def pod_log_tail(self, namespace: str, name: str, container: str, *, lines: int, limit_bytes: int) -> str: ...

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str, *, owner: str | None) -> bool: ...

    def event(self, regarding: Body, *, type: str, reason: str, message: str, action: str) -> Body: ...

    def patch_status(self, namespace: str, name: str, status: Body) -> Body: ...

    def remove_model_deployment_annotation(self, namespace: str, name: str, key: str, value: str) -> bool: ...
