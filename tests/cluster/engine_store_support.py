"""The operator with a real engine store: the test bed's MinIO, reached through a credentials Secret in the
operator's namespace, and engines published into it the way `kestrel build` publishes them.

Each test gets its own store prefix (`s3://engines/<namespace>`) and Secret (`store-<namespace>`), so suites that
run at the same time never see each other's engines.
"""

from __future__ import annotations

import base64
import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from kubernetes import client

from kestrel.api import crd, result
from kestrel.engine import publish
from kestrel.manifests import names
from kestrel.security import manifest, x25519
from kestrel.storage import layout, s3
from testbed import minio
from testbed.engines import model_repository
from tests.cluster_fixtures import OPERATOR_NAMESPACE, Cluster, Operator


@dataclasses.dataclass
class StoreBed:
    operator: Operator
    store: s3.S3Store
    connection: minio.Connection
    secret: str
    namespace: str
    work: pathlib.Path

    def keys(self, name: str) -> set[str]:
        return {engine.key for engine in self.store.list_engines(self.namespace, name)}

    def publish(
        self,
        name: str,
        key: str,
        signer: ed25519.Ed25519PrivateKey,
        *,
        passed: bool = True,
        kek: x25519.PrivateKek | None = None,
    ) -> str:
        """Publish a small engine for `name` under `key`, signed by `signer` (and with `kek`, encrypted to its public
        key, as a build of an encrypted model does); return its URI."""
        folder = self.work / f"publish-{name}-{key[:8]}-{manifest.key_id(signer.public_key())[-6:]}"
        folder.mkdir(parents=True)
        (folder / "signing.pem").write_bytes(manifest.private_key_to_pem(signer))
        kek_public = None
        if kek is not None:
            kek_public = folder / "kek.pub"
            kek_public.write_bytes(kek.public.to_pem())
        uri = self.store.location.engine_uri(layout.EngineRef(self.namespace, name, key))
        destination = publish.Destination(
            uri,
            key,
            folder / "signing.pem",
            credentials_dir=self.connection.write_secret_dir(folder / "credentials"),
            kek_public_key=kek_public,
        )
        gate = result.Gate(passed=passed, reason="Passed" if passed else "AccuracyDrop", message="from the bench")
        outcome = result.BuildResult(engine_key=key, format="onnx", precision="fp32", gate=gate)
        publish.publish(model_repository(folder / "repository", weights_size=32 << 10), outcome, destination, folder)
        return uri


def _models(kube: Cluster, namespace: str) -> list[dict[str, Any]]:
    found = kube.custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL)
    return cast(list[dict[str, Any]], cast(dict[str, Any], found)["items"])  # the custom objects API types it as object


def signing_pair(kube: Cluster, namespace: str, name: str) -> ed25519.Ed25519PrivateKey:
    """The model's signing Secret as the operator's first pass makes it, made by the test so that it can sign engines
    with it: create the ModelDeployment `name` first (the operator not yet running), since the operator keeps a pair
    that exists only when the model owns it. Without such a model, nobody's."""
    key = manifest.generate_signing_key()
    data = {
        "signing.key": manifest.private_key_to_pem(key),
        "signing.pub": manifest.public_key_to_pem(key.public_key()),
    }
    owners = [
        client.V1OwnerReference(
            api_version=crd.API_VERSION, kind=crd.KIND, name=name, uid=model["metadata"]["uid"], controller=True
        )
        for model in _models(kube, namespace)
        if model["metadata"]["name"] == name
    ]
    kube.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=names.signing_secret(name), owner_references=owners or None),
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        ),
    )
    return key


def credentials_secret(kube: Cluster, name: str, connection: minio.Connection) -> None:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in connection.environment().items()}
    kube.core.create_namespaced_secret(
        OPERATOR_NAMESPACE, client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=data)
    )


def events(kube: Cluster, namespace: str, reason: str) -> list[Any]:
    return [e for e in kube.core.list_namespaced_event(namespace).items if e.reason == reason]


@pytest.fixture
def store_bed(
    with_crd: Cluster,
    operator_kubeconfig: pathlib.Path,
    namespace: str,
    minio_connection: minio.Connection,
    tmp_path: pathlib.Path,
) -> Iterator[StoreBed]:
    """The operator watching `namespace`, with an s3:// store in MinIO; its credentials Secret is created by the
    test (`credentials_secret`) so that a test can also start without one."""
    secret = f"store-{namespace}"
    uri = f"s3://{minio_connection.bucket}/{namespace}"
    running = Operator(
        with_crd,
        operator_kubeconfig,
        tmp_path / "operator",
        namespace,
        {"KESTREL_ENGINE_STORE": uri, "KESTREL_STORE_CREDENTIALS_SECRET": secret},
    )
    engines = s3.S3Store(layout.parse_store_uri(uri), s3.Credentials.load(None, minio_connection.environment()))
    bed = StoreBed(running, engines, minio_connection, secret, namespace, tmp_path)
    try:
        yield bed
    finally:
        running.stop()
        try:
            with_crd.core.delete_namespaced_secret(secret, OPERATOR_NAMESPACE)
        except client.ApiException as error:
            if error.status != 404:
                raise
