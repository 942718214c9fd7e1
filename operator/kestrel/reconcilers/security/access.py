"""Access: who may call a model; owns AccessConfigured.

Two fences: a NetworkPolicy admits only the allowed namespaces (and the metrics scraper), and inference
needs an API key that is random and readable only by the subjects in spec.security.access (a Role with `get` on
that one Secret, and its RoleBinding).

The key is kept while the subjects who could read it stay allowed; when one leaves the spec it may still hold a
copy, so the key is replaced in the same pass. Triton reads the key once, at start: the key's id (never the key)
is in the pod template, so a new key rolls the pods, and the old copy stops working once they have rolled.
"""

from __future__ import annotations

import secrets as random
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import conditions
from kestrel.manifests import access as access_manifests
from kestrel.manifests import names, owners, secrets, transport
from kestrel.reconcilers import context
from kestrel.reconcilers.security import generated

API_KEY_BYTES = 32
KEY_ID_BYTES = 8


def _new_key(owner: owners.Owner, readers: set[str]) -> dict[str, Any]:
    key = random.token_urlsafe(API_KEY_BYTES).encode()
    return secrets.api_key(owner, key, random.token_hex(KEY_ID_BYTES), readers)


def _ensure_api_key(ctx: context.Context, owner: owners.Owner) -> tuple[str, str | None]:
    """The API key Secret's name and the id of the key in it: made once, replaced when a reader left the spec."""
    name = names.api_key_secret(ctx.name)
    readers = {subject.label for subject in access_manifests.subjects(ctx.spec)}
    made = _new_key(owner, readers)
    made_now = generated.create_once(ctx, name, lambda: made)
    if made_now:
        ctx.event("Normal", "ApiKeyCreated", made_now.said(f"Created API key Secret {name}"), "Access")
    if made_now is generated.Made.CREATED:
        return name, made["metadata"]["annotations"][secrets.API_KEY_ID_ANNOTATION]
    found = ctx.kube.get("v1", "Secret", ctx.namespace, name, cached=True)
    if found is None or transport.API_KEY_FIELD not in (found.get("data") or {}):
        return name, None  # deleted since the create found it: the next pass makes a new one
    annotations = found["metadata"].get("annotations") or {}
    key_id: str | None = annotations.get(secrets.API_KEY_ID_ANNOTATION)
    could_read = secrets.annotated(found, secrets.READERS_ANNOTATION)
    if could_read - readers:
        ctx.kube.apply(made)
        gone = len(could_read - readers)
        ctx.event(
            "Normal",
            "ApiKeyRotated",
            f"Replaced the API key in Secret {name}: {gone} subject(s) that could read it are no longer allowed; "
            "the pods roll onto the new key",
            "Access",
        )
        return name, made["metadata"]["annotations"][secrets.API_KEY_ID_ANNOTATION]
    if readers - could_read or key_id is None:
        # New readers (or a key made before readers were recorded): recorded, the key kept.
        key_id = key_id or random.token_hex(KEY_ID_BYTES)
        kept = secrets.decode(found, transport.API_KEY_FIELD)
        ctx.kube.apply(secrets.api_key(owner, kept, key_id, could_read | readers))
    return name, key_id


def _readers(ctx: context.Context, owner: owners.Owner) -> str:
    """Apply the Role and (when anyone is allowed) its binding; describe who may read the key."""
    ctx.kube.apply(access_manifests.api_key_role(owner))
    binding = access_manifests.api_key_role_binding(ctx.spec, owner)
    if binding is None:
        # At generation 1 the spec never named a subject, so no pass bound one (a binding left by an earlier model of
        # the same name goes with that owner): a request per new model saved.
        if ctx.generation > 1:
            ctx.kube.delete(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                ctx.namespace,
                names.api_key_reader(ctx.name),
                owner=ctx.uid,
            )
        return "no subject is allowed to read it yet (spec.security.access.allowedGroups/allowedServiceAccounts)"
    ctx.kube.apply(binding)
    subjects = [
        f"{s['kind']} {s.get('namespace', '') + '/' if s.get('namespace') else ''}{s['name']}"
        for s in binding["subjects"]
    ]
    return "readable by " + ", ".join(subjects)


def reconcile(ctx: context.Context, settings: operator_settings.Settings) -> None:
    access = ctx.spec.security.access
    owner = owners.Owner.from_body(ctx.body)
    ctx.kube.apply(access_manifests.network_policy(ctx.spec, owner, settings))
    allowed = access.allowed_namespaces or [ctx.namespace]
    fence = f"NetworkPolicy admits namespaces {', '.join(allowed)}"
    if not access.require_api_key:
        ctx.set(
            conditions.ACCESS_CONFIGURED,
            "False",
            conditions.DISABLED,
            f"spec.security.access.requireApiKey is false: any client the {fence} lets in may infer",
        )
        return
    secret, ctx.api_key_id = _ensure_api_key(ctx, owner)
    readers = _readers(ctx, owner)
    ctx.set(
        conditions.ACCESS_CONFIGURED,
        "True",
        "ApiKey",
        f"{fence}; inference needs the API key in Secret {secret}, {readers}",
    )
