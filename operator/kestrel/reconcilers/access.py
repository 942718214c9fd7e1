"""Access: the API key inference requires; owns AccessConfigured.

The key is random, made once, and lives only in a Secret; Triton reads it from its environment and
clients from the Secret, which RBAC limits to the subjects in spec.security.access.
"""

from __future__ import annotations

import secrets as random

from kestrel.api import conditions
from kestrel.manifests import context as manifest_context
from kestrel.manifests import names, secrets
from kestrel.reconcilers import context

API_KEY_BYTES = 32


def reconcile(ctx: context.Context) -> None:
    access = ctx.spec.security.access
    if not access.require_api_key:
        ctx.set(
            conditions.ACCESS_CONFIGURED,
            "False",
            conditions.DISABLED,
            "spec.security.access.requireApiKey is false: inference is open to anyone who can reach the Service",
        )
        return
    name = names.api_key_secret(ctx.name)
    if ctx.kube.get("v1", "Secret", ctx.namespace, name) is None:
        owner = manifest_context.Owner.from_body(ctx.body)
        key = random.token_urlsafe(API_KEY_BYTES).encode()
        ctx.kube.apply(secrets.api_key(owner, key), force=False)
        ctx.event("Normal", "ApiKeyCreated", f"Created API key Secret {name}", "Access")
    ctx.set(conditions.ACCESS_CONFIGURED, "True", "ApiKey", f"Inference requires the API key in Secret {name}")
