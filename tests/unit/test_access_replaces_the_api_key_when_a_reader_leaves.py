"""reconcilers.security.access: the API key stays while everyone who could read it stays allowed, and is replaced in the
same pass when a subject leaves the spec (it may keep a copy); the key's id, never the key, goes into the pod template,
so a new key rolls the pods."""

from __future__ import annotations

import datetime
from typing import Any

from kestrel.manifests import labels, names, owners, secrets, transport, triton
from kestrel.reconcilers import context
from kestrel.reconcilers.security import access
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
TWO = {"allowedServiceAccounts": ["apps/gateway", "apps/dashboard"]}
ONE = {"allowedServiceAccounts": ["apps/gateway"]}


def passed(kube: FakeKube, subjects: dict[str, Any], generation: int) -> context.Context:
    obj = body({"mode": "disabled"}, access=subjects)
    obj["metadata"]["generation"] = generation
    ctx = context.Context.load(kube, obj, NOW)
    access.reconcile(ctx, SETTINGS)
    return ctx


def key(kube: FakeKube) -> bytes:
    found = kube.secret("vision", names.api_key_secret("cams"))
    assert found is not None
    return secrets.decode(found, transport.API_KEY_FIELD)


def template_annotations(ctx: context.Context) -> dict[str, str]:
    owner = owners.Owner.from_body(ctx.body)
    deployment = triton.deployment(ctx.spec, owner, SETTINGS, "ab" * 32, api_key_id=ctx.api_key_id)
    found: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
    return found


def test_a_reader_leaving_replaces_the_key_and_the_pod_template() -> None:
    kube = FakeKube()
    first = passed(kube, TWO, 1)
    before = key(kube)
    later = passed(kube, ONE, 2)
    assert key(kube) != before
    assert later.api_key_id != first.api_key_id
    assert template_annotations(later) != template_annotations(first)
    assert any(e[1] == "ApiKeyRotated" for e in kube.events)
    assert all(before.decode() not in str(e) for e in kube.events)


def test_the_key_stays_while_its_readers_stay_or_more_are_added() -> None:
    kube = FakeKube()
    first = passed(kube, ONE, 1)
    before = key(kube)
    assert passed(kube, ONE, 2).api_key_id == first.api_key_id
    added = passed(kube, TWO, 3)
    assert key(kube) == before and added.api_key_id == first.api_key_id
    # The added reader is now recorded: its leaving later replaces the key too.
    passed(kube, ONE, 4)
    assert key(kube) != before


def test_the_pod_template_carries_the_keys_id_and_never_the_key() -> None:
    kube = FakeKube()
    ctx = passed(kube, ONE, 1)
    annotations = template_annotations(ctx)
    assert annotations[labels.API_KEY_ID_ANNOTATION] == ctx.api_key_id
    assert key(kube).decode() not in str(annotations)


def test_a_key_made_before_readers_were_recorded_is_kept_and_given_an_id() -> None:
    kube = FakeKube()
    passed(kube, ONE, 1)
    found = kube.secret("vision", names.api_key_secret("cams"))
    assert found is not None
    del found["metadata"]["annotations"]  # as an older operator wrote it
    before = key(kube)
    ctx = passed(kube, ONE, 2)
    assert key(kube) == before and ctx.api_key_id
