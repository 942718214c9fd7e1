"""Access: who may call a model; owns AccessConfigured.

Two fences: a NetworkPolicy admits only the allowed namespaces (and the metrics scraper), and inference
needs an API key that is random, made once, and readable only by the subjects in spec.security.access
(a Role with `get` on that one Secret, and its RoleBinding).
"""

from __future__ import annotations

import secrets as random

from kestrel.api import conditions
from kestrel.manifests import access as access_manifests
from kestrel.manifests import context as manifest_context
from kestrel.manifests import names, secrets
from kestrel.reconcilers import context, generated

API_KEY_BYTES = 32


def _ensure_api_key(ctx: context.Context, owner: manifest_context.Owner) -> str:
    name = names.api_key_secret(ctx.name)
    if generated.create_once(ctx, name, lambda: secrets.api_key(owner, random.token_urlsafe(API_KEY_BYTES).encode())):
        ctx.event("Normal", "ApiKeyCreated", f"Created API key Secret {name}", "Access")
    return name


def _readers(ctx: context.Context, owner: manifest_context.Owner) -> str:
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


def reconcile(ctx: context.Context, settings: manifest_context.Settings) -> None:
    access = ctx.spec.security.access
    owner = manifest_context.Owner.from_body(ctx.body)
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
    secret = _ensure_api_key(ctx, owner)
    readers = _readers(ctx, owner)
    ctx.set(
        conditions.ACCESS_CONFIGURED,
        "True",
        "ApiKey",
        f"{fence}; inference needs the API key in Secret {secret}, {readers}",
    )
