"""Kestrel's Kubernetes client: every API call the operator makes goes through `Kube`.

Child objects are written with server-side apply under the field manager `kestrel`, forced: Kestrel owns
the fields it sets, and a hand edit of one of them is drift to undo, not a conflict to stop at. Forcing is safe only
on the model's own objects: before this process first writes a child (a manifest with a controller reference), it
reads the object of that name, and one without the owner's uid stops the write (`errors.NameConflictError`);
deletes of children go ahead only for objects that carry the owner's uid, and only for that very object.

A `Kube` shares a `recent.Recent` store with its views (`view`): one pass's view skips the apply of a manifest it
(or an earlier pass, within the view's `trust`) already applied unchanged, and answers `get(..., cached=True)`
from what was confirmed as recently. Only kinds whose apply result callers do not read for fresh status are
skipped (`SKIPPABLE`); Deployments are, because the operator watches them and `observe` keeps their status current.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from typing import Any

from kubernetes import client, config
from kubernetes.client import exceptions

from kestrel import operator_metrics
from kestrel.api import errors
from kestrel.kube import failures, ownership, protocol, recent, resources

FIELD_MANAGER = "kestrel"
# Kinds whose unchanged apply a pass may skip. Not Jobs, cert-manager Certificates or Argo Rollouts: their callers
# read the status the apply returns, which other controllers keep changing and nothing here watches.
SKIPPABLE = frozenset(
    {
        ("v1", "Secret"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("argoproj.io/v1alpha1", "AnalysisTemplate"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
    }
)
COMPONENT = "kestrel-operator"
Body = protocol.Body


def describe(body: Body) -> str:
    """`Kind namespace/name`, the way log lines and errors name an object."""
    meta = body.get("metadata", {})
    where = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))
    return f"{body.get('kind')} {where}"


def _resource_of(path: str) -> str:
    """`secrets`, `deployments`, `modeldeployments/status`: the resource of a REST path, for the request counter."""
    parts = path.strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    return "/".join(parts[:1] + parts[2:3])


class Kube:
    """A thin, typed wrapper over the REST API for the kinds in `resources`."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        field_manager: str = FIELD_MANAGER,
        known: recent.Recent | None = None,
        trust: float = 0.0,
    ) -> None:
        self.api = api
        self.field_manager = field_manager
        self.known = known if known is not None else recent.Recent(trust=0.0)
        self.trust = trust
        # Only a view trusts what it confirmed itself (`view` sets this); the shared client trusts nothing remembered.
        self.opened = float("inf")

    def view(self, trust: float = 0.0) -> Kube:
        """A client for one pass: it trusts what it confirmed itself, and what any pass confirmed within `trust`
        seconds (0: nothing from before it opened)."""
        opened = Kube(self.api, field_manager=self.field_manager, known=self.known, trust=trust)
        opened.opened = self.known.clock()
        return opened

    def _since(self) -> float:
        """The oldest confirmation this client trusts: its own (a view's), or any within `trust`."""
        return min(self.opened, self.known.clock() - self.trust) if self.trust > 0 else self.opened

    @classmethod
    def connect(cls, kubeconfig: str | None = None, *, known: recent.Recent | None = None, pool_size: int = 0) -> Kube:
        """In a pod: its ServiceAccount. Elsewhere: the given kubeconfig, or $KUBECONFIG / ~/.kube/config."""
        configuration = client.Configuration()
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        # One kept-alive connection per pass that may run at once: with fewer (the client's default is 5 per CPU),
        # passes beyond the pool open and close a TLS connection per request, a handshake each on both ends.
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, pool_size)
        return cls(client.ApiClient(configuration), known=known)

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        action: str,
    ) -> Body:
        data = self._call(method, path, body=body, query=query, content_type=content_type, action=action)
        result: Body = json.loads(data) if data else {}
        return result

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 30,
        action: str,
    ) -> bytes:
        """One request, counted; the response body as bytes, or a KestrelError naming `action`."""
        operator_metrics.API_REQUESTS.labels(method, _resource_of(path)).inc()
        with failures.translated(action):
            method, url, headers, payload, _ = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params={"Accept": accept, "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, header_params=headers, body=payload, _request_timeout=timeout)
            data = response.read()
            if not 200 <= response.status < 300:
                raise exceptions.ApiException(http_resp=response)
        return bytes(data or b"")

    def apply(self, body: Body, *, force: bool = True) -> Body:
        """Server-side apply of a whole object, as field manager `kestrel`; returns the object as stored.

        Skipped (the remembered object returned) when this view may trust an earlier apply of the same manifest.
        """
        resource = resources.lookup(body["apiVersion"], body["kind"])
        meta = body["metadata"]
        key, owner = recent.key_of(body), ownership.controller_uid(body)
        manifest_digest = recent.digest(body)
        skippable = (resource.api_version, resource.kind) in SKIPPABLE
        if skippable:
            known = self.known.applied(key, manifest_digest, self._since())
            if known is not None:
                operator_metrics.REQUESTS_SAVED.labels("apply").inc()
                if owner is not None:
                    self.known.record_owner(key, owner)
                return known
        if owner is not None:
            self._claim(body, owner)
        query = [("fieldManager", self.field_manager)]
        if force:
            query.append(("force", "true"))
        stored = self._request(
            "PATCH",
            resource.path(meta.get("namespace"), meta["name"]),
            body=body,
            query=query,
            content_type="application/apply-patch+yaml",
            action=f"apply {describe(body)}",
        )
        if skippable and stored.get("metadata"):
            self.known.record(stored, manifest_digest=manifest_digest)
        if owner is not None:
            self.known.record_owner(key, owner)
        return stored

    def _claim(self, body: Body, owner: str) -> None:
        """Refuse to write a child over an object of its name that `owner` does not own (NameConflictError).

        Asked once per object and process (`recent.Recent.owned`). Between this read finding nothing and the
        apply, someone could create the object and have it taken over; only an object made in that instant, by
        whoever races for it, not one that was there before.
        """
        key = recent.key_of(body)
        if self.known.owned(key, owner):
            return
        meta = body["metadata"]
        found = self.get(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])
        ownership.require(found, owner)
        if found is not None:
            self.known.record_owner(key, owner)

    def adopt(self, found: Body, owner: str) -> None:
        """Let writes of `owner`'s child go to `found`, which carries no reference to `owner` yet: for an object
        the caller has established is the owner's by other means (a Secret cert-manager issued for its Certificate).
        """
        self.known.record_owner(recent.key_of(found), owner)

    def create(self, body: Body) -> Body:
        """Create an object that must not exist yet; ConflictError when it does (someone created it first).

        For objects whose first writer must win, like the operator CA: an apply by the same field manager would
        replace what another pass created a moment before, and everything issued from it with it.
        """
        resource = resources.lookup(body["apiVersion"], body["kind"])
        meta = body["metadata"]
        owner = ownership.controller_uid(body)
        try:
            stored = self._request(
                "POST",
                resource.path(meta.get("namespace")),
                body=body,
                query=[("fieldManager", self.field_manager)],
                action=f"create {describe(body)}",
            )
        except errors.ConflictError:
            if owner is not None:
                # Callers take "already exists" for "an earlier pass made it": true only of the owner's own.
                ownership.require(
                    self.get(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"]), owner
                )
            raise
        if stored.get("metadata") and stored.get("apiVersion") and stored.get("kind"):
            self.known.record(stored)
        if owner is not None:
            self.known.record_owner(recent.key_of(body), owner)
        return stored

    def replace(self, body: Body) -> Body:
        """Write a whole object read earlier (PUT with its resourceVersion); ConflictError when someone wrote it
        since: the compare-and-swap that leader election needs, which an apply would not give."""
        resource = resources.lookup(body["apiVersion"], body["kind"])
        meta = body["metadata"]
        return self._request(
            "PUT",
            resource.path(meta.get("namespace"), meta["name"]),
            body=body,
            query=[("fieldManager", self.field_manager)],
            action=f"replace {describe(body)}",
        )

    def get(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        cached: bool = False,
        trust: float = 0.0,
    ) -> Body | None:
        """The object, or None when it does not exist.

        `cached`: an object this view may trust as recently confirmed is returned without a request; only for
        objects that nobody but Kestrel changes (its own keys and API key, say), never for ones it waits on.
        `trust` (with `cached`): also trust any confirmation within that many seconds, even in a view that
        trusts less; for one operator-wide object that every model's pass reads (the CA, the store's credentials).
        """
        resource = resources.lookup(api_version, kind)
        key = (resource.api_version, resource.kind, namespace or "", name)
        if cached:
            since = min(self._since(), self.known.clock() - trust) if trust > 0 else self._since()
            known = self.known.seen(key, since)
            if known is not None:
                operator_metrics.REQUESTS_SAVED.labels("get").inc()
                return known
        try:
            found = self._request("GET", resource.path(namespace, name), action=f"get {kind} {namespace}/{name}")
        except errors.NotFoundError:
            self.known.forget(key)
            return None
        if found.get("metadata") and found.get("apiVersion") and found.get("kind"):
            self.known.record(found)
        return found

    def get_model_deployment(self, namespace: str, name: str) -> Body | None:
        """A ModelDeployment as stored now (not as a watch last delivered it), or None when it is gone."""
        resource = resources.MODEL_DEPLOYMENT
        try:
            return self._request(
                "GET", resource.path(namespace, name), action=f"get {resource.kind} {namespace}/{name}"
            )
        except errors.NotFoundError:
            return None

    def annotate_model_deployment(self, namespace: str, name: str, annotations: dict[str, str | None]) -> Body:
        """Merge-patch a ModelDeployment's annotations (None removes one); NotFoundError when it does not exist."""
        patch = {"metadata": {"annotations": annotations}}
        return self._patch_model_deployment(namespace, name, patch, "application/merge-patch+json", "annotate")

    def remove_model_deployment_annotation(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Remove an annotation only while it still holds `value` (a JSON patch `test`); False when it no longer
        does or is gone: a request made after the caller read the object stays for the next pass, not dropped."""
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        patch = [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]
        try:
            self._patch_model_deployment(namespace, name, patch, "application/json-patch+json", f"remove {key} of")
        except (errors.InvalidError, errors.NotFoundError):
            return False
        return True

    def _patch_model_deployment(self, namespace: str, name: str, patch: Any, content_type: str, verb: str) -> Body:
        resource = resources.MODEL_DEPLOYMENT
        return self._request(
            "PATCH",
            resource.path(namespace, name),
            body=patch,
            query=[("fieldManager", self.field_manager)],
            content_type=content_type,
            action=f"{verb} {resource.kind} {namespace}/{name}",
        )

    def observe(self, body: Body, *, deleted: bool = False) -> Body | None:
        """A watch event of an owned object: what was remembered before it (None: nothing), and remember it."""
        if deleted:
            before = self.known.seen(recent.key_of(body), float("-inf"))
            self.known.forget(recent.key_of(body))
            return before
        return self.known.observe(body)

    def list(self, api_version: str, kind: str, namespace: str | None, *, labels: str | None = None) -> list[Body]:
        """Objects of a kind in a namespace (all namespaces for None), optionally by label selector."""
        resource = resources.lookup(api_version, kind)
        path = resource.path(namespace)
        query = [("labelSelector", labels)] if labels else []
        items: list[Body] = self._request("GET", path, query=query, action=f"list {kind}").get("items", [])
        return items

    def pod_log_tail(self, namespace: str, name: str, container: str, *, lines: int, limit_bytes: int) -> str:
        """The last `lines` lines of a container's log, at most `limit_bytes` (the API server cuts it). The text is
        the pod's: a caller believes only what it parses strictly, and never quotes it."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
        query = [("container", container), ("tailLines", str(lines)), ("limitBytes", str(limit_bytes))]
        # Any type: the API server refuses Accept: text/plain (406) and serves the log as text to */*.
        data = self._call("GET", path, query=query, accept="*/*", timeout=10, action=f"read the log of pod {name}")
        return data[:limit_bytes].decode("utf-8", errors="replace")

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str, *, owner: str | None) -> bool:
        """Delete with background propagation; False when it was already gone (or this view saw it deleted).

        `owner`: the uid of the ModelDeployment whose child this is. The object is read first and deleted only when
        it carries that uid, and only that very object (a uid precondition); one of someone else is left alone
        (False). None only for an object that is nobody's child.
        """
        resource = resources.lookup(api_version, kind)
        key = (resource.api_version, resource.kind, namespace or "", name)
        if self.known.gone(key, self._since()):
            operator_metrics.REQUESTS_SAVED.labels("delete").inc()
            return False
        options: Body = {"propagationPolicy": "Background"}
        if owner is not None:
            found = self.get(api_version, kind, namespace, name)
            if found is None:
                self.known.record_gone(key)
                return False
            if not ownership.owned_by(found, owner):
                return False
            options["preconditions"] = {"uid": found["metadata"]["uid"]}
        try:
            self._request(
                "DELETE", resource.path(namespace, name), body=options, action=f"delete {kind} {namespace}/{name}"
            )
        except errors.NotFoundError:
            self.known.record_gone(key)
            return False
        except errors.ConflictError:
            # The precondition failed: the object read above was replaced, by someone else's of the same name.
            self.known.forget(key)
            return False
        self.known.record_gone(key)
        return True

    def patch_status(self, namespace: str, name: str, status: Body) -> Body:
        """Merge-patch a ModelDeployment's status subresource (the operator is its only writer)."""
        resource = resources.MODEL_DEPLOYMENT
        return self._request(
            "PATCH",
            resource.path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
            action=f"update status of {resource.kind} {namespace}/{name}",
        )

    def event(self, regarding: Body, *, type: str, reason: str, message: str, action: str) -> Body:
        """Record an Event about an object; the reason is the condition reason it reports."""
        meta = regarding["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": regarding["apiVersion"],
                "kind": regarding["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "action": action,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": os.environ.get("HOSTNAME", COMPONENT),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return self._request(
            "POST",
            resources.lookup("v1", "Event").path(meta["namespace"]),
            body=body,
            action=f"record Event {reason} on {describe(regarding)}",
        )
