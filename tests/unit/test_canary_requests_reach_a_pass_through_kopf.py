"""A canary request (`kestrel canary promote|abort`) starts a pass as soon as Kopf sees it, not at the next drift check.

Kopf decides what changed from an object's "essence" (handlers/state.py stores it under `kestrel.dev/`), and leaves
every annotation under a prefix it keeps its own records in out of it: a request under `kestrel.dev/` would be no
change at all. So the request lives under `canary.kestrel.dev/`; these tests run Kopf's own essence and handler
matching (Kopf is pinned in pyproject.toml) on the update a request makes and on the one its removal makes.
"""

from __future__ import annotations

import logging

import kopf
from kopf._cogs.structs import bodies, diffs, ephemera, patches, references
from kopf._core.intents import causes

from kestrel.api import actions, crd
from kestrel.handlers import modeldeployment, state

RESOURCE = references.Resource(crd.GROUP, crd.VERSION, crd.PLURAL, kind=crd.KIND, namespaced=True)
STORAGE = kopf.AnnotationsDiffBaseStorage(prefix=state.ANNOTATION_PREFIX, key="last-handled-configuration")


def model(annotations: dict[str, str]) -> bodies.RawBody:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        # Kopf marks the objects it keeps records on; the marker is what makes it ignore the whole prefix.
        "metadata": {
            "name": "cams",
            "namespace": "vision",
            "annotations": {"kestrel.dev/kopf-managed": "yes", **annotations},
        },
        "spec": {"rollout": {"strategy": "canary"}},
    }


def handlers_for(old: bodies.RawBody, new: bodies.RawBody) -> list[str]:
    """The ids of the update handlers Kopf would run for this change."""
    before, after = STORAGE.build(body=bodies.Body(old)), STORAGE.build(body=bodies.Body(new))
    cause = causes.ChangingCause(
        logger=logging.getLogger("test"),
        indices={},
        memo=ephemera.AnyMemo(kopf.Memo()),
        resource=RESOURCE,
        patch=patches.Patch(),
        body=bodies.Body(new),
        initial=False,
        reason=causes.Reason.UPDATE,
        diff=diffs.diff(before, after),
        old=before,
        new=after,
    )
    registry = kopf.get_default_registry()
    return [handler.id for handler in registry._changing.get_handlers(cause)]


def answers(handler_ids: list[str]) -> bool:
    return any(handler_id.startswith("answer-request/") for handler_id in handler_ids)


def test_setting_a_request_runs_the_pass_that_answers_it() -> None:
    assert modeldeployment.answer_request  # registered on import
    for action in actions.CANARY_ACTIONS:
        assert answers(handlers_for(model({}), model({actions.CANARY_ACTION: action})))
    assert answers(handlers_for(model({actions.CANARY_ACTION: "promote"}), model({actions.CANARY_ACTION: "abort"})))


def test_removing_it_or_changing_anything_else_does_not() -> None:
    assert not answers(handlers_for(model({actions.CANARY_ACTION: "promote"}), model({})))
    assert not answers(handlers_for(model({}), model({"team": "vision"})))


def test_under_kopfs_own_prefix_a_request_would_be_no_change_at_all() -> None:
    # Why the name is not kestrel.dev/canary-action: Kopf's essence drops it, so nothing would run.
    old, new = model({}), model({"kestrel.dev/canary-action": "promote"})
    assert STORAGE.build(body=bodies.Body(old)) == STORAGE.build(body=bodies.Body(new))
    assert STORAGE.build(body=bodies.Body(model({}))) != STORAGE.build(
        body=bodies.Body(model({actions.CANARY_ACTION: "promote"}))
    )
