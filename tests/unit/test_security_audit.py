"""Audit lines are one JSON object naming object, change and (unverified) field managers; anything resembling key
material is redacted, never the whole line."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import random

import pytest

from kestrel.security import audit, certificates, errors, kms, manifest

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
OBJ = audit.ObjectRef("ModelDeployment", "vision", "cams", uid="4f6c2a9e-8d31-4b7a-9c55-0e1f2a3b4c5d", generation=7)
DIGEST = "sha256:" + "9f" * 32

MANAGED_FIELDS = [
    {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": {"f:spec": {"f:engine": {}}}},
    {"manager": "argocd-controller", "operation": "Apply", "fieldsV1": {"f:spec": {}, "f:metadata": {}}},
    {"manager": "kestrel", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
    {"manager": "helm", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
]


def test_a_line_is_one_json_object_with_everything_an_auditor_needs() -> None:
    text = audit.line(
        OBJ,
        audit.Change.ENGINE,
        old={"digest": DIGEST, "precision": "fp16"},
        new={"digest": "sha256:" + "0a" * 32, "precision": "int8"},
        field_managers=["kubectl-client-side-apply"],
        now=NOW,
    )
    assert "\n" not in text
    parsed = json.loads(text)
    assert parsed == {
        "audit": audit.SCHEMA,
        "time": "2026-03-01T12:00:00Z",
        "message": "Changed engine of ModelDeployment vision/cams",
        "object": {
            "kind": "ModelDeployment",
            "namespace": "vision",
            "name": "cams",
            "uid": "4f6c2a9e-8d31-4b7a-9c55-0e1f2a3b4c5d",
            "generation": 7,
        },
        "change": "engine",
        "old": {"digest": DIGEST, "precision": "fp16"},
        "new": {"digest": "sha256:" + "0a" * 32, "precision": "int8"},
        "fieldManagers": ["kubectl-client-side-apply"],
        "identity": audit.IDENTITY,
    }
    # A field manager is whatever name the client gave itself: the line says so, and where the real "who" is.
    assert parsed["identity"].startswith("unverified")
    assert "API server's audit log" in parsed["identity"]


@pytest.mark.parametrize(
    ("old", "new", "verb"),
    [(None, {"generation": 1}, "Created"), ({"generation": 1}, None, "Deleted"), ({}, {}, "Changed")],
)
def test_the_message_says_what_happened(old: dict[str, int] | None, new: dict[str, int] | None, verb: str) -> None:
    record = audit.record(OBJ, audit.Change.SPEC, old=old, new=new, field_managers=[], now=NOW)
    assert record["message"] == f"{verb} spec of ModelDeployment vision/cams"


def test_field_managers_of_the_spec_leave_out_status_writers_and_other_fields() -> None:
    assert audit.field_managers(MANAGED_FIELDS) == ["argocd-controller", "kubectl-client-side-apply"]
    assert audit.field_managers(MANAGED_FIELDS, touching=None) == [
        "argocd-controller",
        "helm",
        "kubectl-client-side-apply",
    ]
    assert audit.field_managers([{"operation": "Update"}, {"manager": 3}]) == []


def test_legitimate_audit_values_pass() -> None:
    kek = kms.LocalKek.generate()
    ca = certificates.create_ca(now=NOW)
    values = {
        "kekId": kek.key_id,
        "signingKey": manifest.key_id(manifest.generate_signing_key().public_key()),
        "certificate": certificates.fingerprint(ca.certificate),
        "notAfter": ca.certificate.not_valid_after_utc.isoformat(),
        "source": "s3://Models-Bucket/Vision/YoloV8/Weights/Best-2026-03-01/yolo11n.pt",
        "engineKey": "0123abcd",
        "pod": "cams-triton-7f9c8d6b5-x2z4q",
        "reason": "CertificateRenewedBeforeExpiryOnSchedule",
        "serviceAccount": "system:serviceaccount:vision:detector-client-with-a-long-name",
    }
    audit.record(OBJ, audit.Change.KEY, old=None, new=values, field_managers=["kestrel"], now=NOW)


RNG = random.Random(20261128)
KEY = RNG.randbytes(32)
PEM = certificates.create_ca(now=NOW).private_key_pem().decode()

LEAKS = {
    "pem-private-key": PEM,
    "pem-inline": "key=" + PEM.replace("\n", "\\n"),
    "hex-key": KEY.hex(),
    "hex-key-upper": KEY.hex().upper(),
    "hex-128-bit": KEY[:16].hex(),
    "base64-key": base64.b64encode(KEY).decode(),
    "urlsafe-key": base64.urlsafe_b64encode(KEY).decode(),
    "key-in-a-sentence": "loaded data key " + base64.b64encode(KEY).decode() + " from the secret",
    "jwt": "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFiQzEyMyJ9.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0.c2ln",
    "mislabelled-digest": "sha256:" + KEY.hex() + "ab",
    "sha256-label-on-a-longer-run": "sha256:" + (KEY + KEY).hex(),
}


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_key_material_is_detected(name: str) -> None:
    assert audit.find_key_material(LEAKS[name]) is not None


def _leaks_nothing(text: str) -> None:
    assert KEY.hex() not in text.lower()
    assert base64.b64encode(KEY).decode() not in text
    assert base64.urlsafe_b64encode(KEY).decode() not in text
    assert "PRIVATE KEY" not in text
    assert audit.find_key_material(text) is None


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_key_material_is_redacted_naming_the_field_and_the_rest_of_the_line_is_kept(name: str) -> None:
    text = audit.line(
        OBJ,
        audit.Change.KEY,
        old=None,
        new={"token": LEAKS[name], "key": "signing"},
        field_managers=["kubectl"],
        now=NOW,
    )
    _leaks_nothing(text)
    parsed = json.loads(text)
    assert parsed["new"] == {"token": audit.REDACTED, "key": "signing"}
    assert parsed["redacted"] == ["$.new.token"]
    assert parsed["object"]["name"] == "cams" and parsed["fieldManagers"] == ["kubectl"]


def test_a_key_like_field_manager_is_redacted_alone() -> None:
    # Managers are chosen by whoever writes the object: `kubectl apply --field-manager=<a key>` must neither leak
    # into the log nor silence the audit line for everyone else's change.
    managers = ["argocd-controller", KEY.hex(), base64.b64encode(KEY).decode()]
    text = audit.line(
        OBJ, audit.Change.SPEC, old={"generation": 6}, new={"generation": 7}, field_managers=managers, now=NOW
    )
    _leaks_nothing(text)
    parsed = json.loads(text)
    assert parsed["fieldManagers"] == ["argocd-controller", audit.REDACTED, audit.REDACTED]
    assert parsed["redacted"] == ["$.fieldManagers[1]", "$.fieldManagers[2]"]
    assert parsed["new"] == {"generation": 7}


def test_a_key_like_field_name_is_redacted_and_keeps_its_value() -> None:
    record = audit.record(
        OBJ, audit.Change.KEY, old=None, new={KEY.hex(): 1, KEY[:16].hex(): 2}, field_managers=[], now=NOW
    )
    assert record["new"] == {f"{audit.REDACTED}.0": 1, f"{audit.REDACTED}.1": 2}
    assert record["redacted"] == ["$.new (key 0)", "$.new (key 1)"]
    _leaks_nothing(json.dumps(record))


def test_nothing_is_redacted_from_a_clean_line() -> None:
    record = audit.record(OBJ, audit.Change.SPEC, old=None, new={"generation": 1}, field_managers=["kubectl"], now=NOW)
    assert "redacted" not in record


def test_check_safe_still_refuses_naming_the_field_not_the_value() -> None:
    with pytest.raises(errors.KeyMaterialError, match=r"\$\.token") as caught:
        audit.check_safe({"token": base64.b64encode(KEY).decode()})
    _leaks_nothing(str(caught.value))


def test_random_padded_base64_keys_are_always_caught() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        assert audit.find_key_material(base64.b64encode(rng.randbytes(32)).decode()) is not None


def test_the_logging_filter_redacts_without_dropping_the_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kestrel.test.audit")
    guard = audit.RedactingFilter()
    logger.addFilter(guard)
    try:
        with caplog.at_level(logging.INFO, logger="kestrel.test.audit"):
            logger.info("Created Secret vision/cams-tls")
            logger.info("Loaded key %s", KEY.hex())
            try:
                raise RuntimeError(base64.b64encode(KEY).decode())
            except RuntimeError:
                logger.exception("Failed to wrap")
    finally:
        logger.removeFilter(guard)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "Created Secret vision/cams-tls"
    assert messages[1].startswith("[redacted")
    assert messages[2].startswith("[redacted")
    assert KEY.hex() not in caplog.text
    assert base64.b64encode(KEY).decode() not in caplog.text
