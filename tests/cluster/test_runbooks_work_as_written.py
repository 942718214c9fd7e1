"""docs/runbooks.md, run as written: each `sh` block with NAME, NS and KEK filled in, against the operator running
on the test bed with an s3:// store in MinIO (under the chart's RBAC), and what each promises checked afterwards:
the engines re-wrapped under the new KEK with the old key gone, a new server certificate, a new CA behind every
certificate and the CA bundle, a new API key."""

from __future__ import annotations

import base64
import os
import pathlib
import re
import secrets
import subprocess
from typing import Any

from cryptography import x509
from kubernetes import client

from kestrel.api import keys, spec
from kestrel.manifests import names
from kestrel.manifests import secrets as secret_manifests
from kestrel.reconcilers.security import key_rotation
from kestrel.security import manifest, x25519
from kestrel.storage import layout
from tests.cluster.engine_store_support import StoreBed, credentials_secret, events, signing_pair, store_bed
from tests.cluster.operator_support import condition, get_mdep, mdep_spec, meta, wait_for
from tests.cluster.storage_fixtures import minio_connection
from tests.cluster_fixtures import OPERATOR_NAMESPACE, Cluster

__all__ = ["minio_connection", "store_bed"]  # fixtures, imported for pytest to find

RUNBOOKS = pathlib.Path(__file__).parents[2] / "docs" / "runbooks.md"
NAME, KEK = "cams", "cams-kek"
OLD_KEY = secrets.token_bytes(32)
OLD_KEK = x25519.PrivateKek(OLD_KEY)


def _blocks(section: str) -> list[str]:
    """The `sh` blocks of the `## section` of the runbooks, in order."""
    text = RUNBOOKS.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/runbooks.md has no section {section!r}"
    return re.findall(r"```sh\n(.*?)```", match.group(1), re.DOTALL)


def _run(kube: Cluster, block: str, namespace: str, work: pathlib.Path) -> str:
    command = block.replace("NAME", NAME).replace("NS", namespace).replace("KEK", KEK)
    env = {
        **os.environ,
        "KUBECONFIG": str(kube.bed.kubeconfig),
        "PATH": f"{kube.bed.bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{command}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    return done.stdout


def _secret_data(kube: Cluster, namespace: str, name: str) -> dict[str, bytes]:
    found = kube.core.read_namespaced_secret(name, namespace)
    return {key: base64.b64decode(value) for key, value in (found.data or {}).items()}


def _encrypted(kube: Cluster, namespace: str) -> dict[str, Any]:
    return condition(get_mdep(kube, namespace, NAME), "Encrypted") or {}


def _ready_model(kube: Cluster, bed: StoreBed, *, encrypted: bool) -> None:
    """The model, its engine published (under OLD_KEK when encrypted), and the operator started; returns once the
    model's keys and certificate exist. (An engine of no revision would be collected by the operator's garbage
    collection, racing the rotation.)"""
    namespace = bed.namespace
    raw = mdep_spec(namespace)
    if encrypted:
        raw["security"] = {"encryption": {"enabled": True, "keySecret": KEK}}
        data = {"kek": base64.b64encode(OLD_KEY).decode()}
        kube.core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=KEK), data=data)
        )
    kube.create_mdep(namespace, NAME, raw)
    signer = signing_pair(kube, namespace, NAME)
    key = keys.engine_key(spec.parse(raw))
    bed.publish(NAME, key, signer, kek=OLD_KEK if encrypted else None)
    credentials_secret(kube, bed.secret, bed.connection)
    bed.operator.start()
    wait_for(
        "the model's certificate",
        lambda: (condition(get_mdep(kube, namespace, NAME), "CertificateReady") or {}).get("status") == "True",
        timeout=60,
    )


def _stored_kek_ids(kube: Cluster, bed: StoreBed) -> set[str]:
    public = manifest.load_public_key(_secret_data(kube, bed.namespace, names.signing_secret(NAME))["signing.pub"])
    found = set()
    for engine in bed.store.list_engines(bed.namespace, NAME):
        ref = layout.EngineRef(bed.namespace, NAME, engine.key)
        document = manifest.verify(bed.store.read_manifest(ref), public)
        assert isinstance(document, manifest.Manifest)
        found.add(document.wrapped_key.kek_id)
    return found


def test_the_key_rotation_runbook_rewraps_the_stored_engines_and_retires_the_old_key(
    kube: Cluster, store_bed: StoreBed, tmp_path: pathlib.Path
) -> None:
    namespace = store_bed.namespace
    _ready_model(kube, store_bed, encrypted=True)
    wait_for("Encrypted=True", lambda: _encrypted(kube, namespace).get("reason") == "KeySecret", timeout=60)
    assert _stored_kek_ids(kube, store_bed) == {OLD_KEK.public.key_id}

    rotate, wait, retire = _blocks("Rotating a model's key-encryption key")
    _run(kube, rotate, namespace, tmp_path)
    new_key = (tmp_path / "new.kek").read_bytes()
    new_kek = x25519.PrivateKek(new_key)
    assert _secret_data(kube, namespace, KEK) == {"kek": new_key, "kek-1": OLD_KEY}
    _run(kube, wait, namespace, tmp_path)
    assert _stored_kek_ids(kube, store_bed) == {new_kek.public.key_id}
    assert "every stored engine (1) is wrapped by it" in _encrypted(kube, namespace)["message"]
    assert events(kube, namespace, key_rotation.REWRAPPED)
    # Builds from now on wrap under the new key.
    public = _secret_data(kube, namespace, names.kek_public_secret(NAME))
    assert x25519.PublicKek.from_pem(public[secret_manifests.KEK_PUBLIC_KEY]).key_id == new_kek.public.key_id

    _run(kube, retire, namespace, tmp_path)
    assert _secret_data(kube, namespace, KEK) == {"kek": new_key}
    assert not (tmp_path / "old.kek").exists() and not (tmp_path / "new.kek").exists()
    wait_for("Encrypted back to one key", lambda: _encrypted(kube, namespace).get("reason") == "KeySecret", timeout=30)
    log = store_bed.operator.log()
    assert OLD_KEY.hex() not in log and base64.b64encode(OLD_KEY).decode() not in log


def _certificate(kube: Cluster, namespace: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(_secret_data(kube, namespace, names.tls_secret(NAME))["tls.crt"])


def _bundle(kube: Cluster, namespace: str) -> bytes:
    config_map = kube.core.read_namespaced_config_map(names.ca_bundle(NAME), namespace)
    assert config_map.data is not None
    return str(config_map.data["ca.crt"]).encode()


def test_the_certificate_and_api_key_runbooks_replace_what_they_say(
    kube: Cluster, store_bed: StoreBed, tmp_path: pathlib.Path
) -> None:
    namespace = store_bed.namespace
    _ready_model(kube, store_bed, encrypted=False)
    show, renew, replace_ca = _blocks("Certificates")
    first = _certificate(kube, namespace)

    shown = _run(kube, show, namespace, tmp_path)
    assert f"notAfter={first.not_valid_after_utc.strftime('%b')}" in shown.replace("  ", " ")
    assert "issuer=" in shown

    _run(kube, renew, namespace, tmp_path)
    renewed = wait_for("a new server certificate", lambda: _changed_certificate(kube, namespace, first))
    assert events(kube, namespace, "CertificateIssued")

    old_ca = _bundle(kube, namespace)
    _run(kube, replace_ca, namespace, tmp_path)
    wait_for("the CA bundle to hold the new CA", lambda: _bundle(kube, namespace) != old_ca, timeout=60)
    new_ca = x509.load_pem_x509_certificate(
        _secret_data(kube, OPERATOR_NAMESPACE, secret_manifests.CA_SECRET)["tls.crt"]
    )
    assert x509.load_pem_x509_certificate(_bundle(kube, namespace)) == new_ca
    reissued = wait_for(
        "the certificate reissued from the new CA", lambda: _changed_certificate(kube, namespace, renewed), timeout=60
    )
    reissued.verify_directly_issued_by(new_ca)
    assert events(kube, namespace, "CertificateReissued")

    (new_key,) = _blocks("The API key")
    before = kube.core.read_namespaced_secret(names.api_key_secret(NAME), namespace)
    _run(kube, new_key, namespace, tmp_path)

    def replaced() -> bool:
        try:
            after = kube.core.read_namespaced_secret(names.api_key_secret(NAME), namespace)
        except client.ApiException as error:  # deleted, not yet made again
            if error.status != 404:
                raise
            return False
        assert after.metadata is not None and before.metadata is not None
        return bool(meta(after).uid != meta(before).uid and after.data != before.data)

    wait_for("a new API key", replaced)


def _changed_certificate(kube: Cluster, namespace: str, than: x509.Certificate) -> x509.Certificate | None:
    """The server certificate when it is another than `than`; None while it is that one or being issued again."""
    try:
        found = _certificate(kube, namespace)
    except client.ApiException as error:  # deleted, not yet issued again
        if error.status != 404:
            raise
        return None
    return found if found.serial_number != than.serial_number else None
