"""An encrypted, mutual-TLS model on the real node, its engines in MinIO: what the pods do, read from the pods.

The chart is installed with an s3:// engine store on the test bed's MinIO (reached from the pods at the node
address). The quickstart model asks for encryption (a key-encryption key in a Secret), mutual TLS for one allowed
ServiceAccount, the API key, and both gRPC and HTTP clients. The store must hold ciphertext only; the plaintext
repository must exist only in the Triton pod's memory-backed volume; a client without the operator-issued client
certificate is refused over gRPC and over HTTPS (Kestrel's TLS proxy in the pod); Triton's plain HTTP is closed at
the pod's address.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import pathlib
import socket
import ssl
from collections.abc import Iterator

import minio
import pytest
import yaml

from kestrel import infer
from kestrel.manifests import access, names, owners, transport
from testbed import install
from tests.realnode import support
from tests.realnode.support import RealNode

pytestmark = pytest.mark.timeout(3600)

NAMESPACE = "realnode-encrypted"
CLIENT = access.Client("ServiceAccount", "camera-gateway", NAMESPACE)
STORE_SECRET = "engine-store"


@dataclasses.dataclass(frozen=True)
class Protected:
    node: RealNode
    name: str
    work: pathlib.Path
    store: minio.Minio
    bucket: str

    def endpoint(self, *, client_certificate: bool) -> infer.Endpoint:
        endpoint = install.service_endpoint(self.node.kube.bed, NAMESPACE, self.name, self.work)
        if not client_certificate:
            return endpoint
        secret = CLIENT.secret_name(owners.Owner(name=self.name, namespace=NAMESPACE, uid=""))
        folder = self.work / "client"
        folder.mkdir(exist_ok=True)
        for key in ("tls.crt", "tls.key"):
            (folder / key).write_bytes(self.node.kube.bed.secret_value(NAMESPACE, secret, key))
        return dataclasses.replace(endpoint, cert_file=folder / "tls.crt", key_file=folder / "tls.key")


@pytest.fixture(scope="module")
def protected(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Protected]:
    bed = real_node.kube.bed
    bed.up(minio=True)
    for_pods, here = bed.minio(for_pods=True), bed.minio()
    assert for_pods is not None and here is not None
    work = tmp_path_factory.mktemp("encrypted")
    bed.kubectl("create", "namespace", install.NAMESPACE, check=False)
    # Applied from a file, not given on a command line: the credentials stay out of process lists and errors.
    store_secret = work / "store-secret.yaml"
    store_secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": STORE_SECRET, "namespace": install.NAMESPACE},
                "stringData": for_pods.environment(),
            }
        )
    )
    store_secret.chmod(0o600)
    bed.kubectl("apply", "--server-side", "--field-manager=kestrel-tests", "-f", str(store_secret))
    chart = install.values(f"s3://{for_pods.bucket}/realnode", storeCredentialsSecret=STORE_SECRET, resyncSeconds=5)
    install.helm_install(bed, chart)
    kek = base64.b64encode(os.urandom(32)).decode()
    spec = {
        "security": {
            "tls": {"mode": "operator", "mutual": True},
            "encryption": {"enabled": True, "keySecret": "inspection-kek"},
            "access": {"allowedServiceAccounts": [f"{NAMESPACE}/{CLIENT.name}"], "requireApiKey": True},
        },
        "serving": {"replicas": 1, "protocols": ["grpc", "http"], "triton": {"runtime": "python"}},
    }
    try:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "inspection-kek", "namespace": NAMESPACE},
            "stringData": {"kek": kek},
        }
        name, _ = support.deploy_quickstart(real_node, work, NAMESPACE, spec, [secret])
        endpoint = here.endpoint.removeprefix("http://")
        store = minio.Minio(endpoint, access_key=here.access_key, secret_key=here.secret_key, secure=False)
        yield Protected(real_node, name, work, store, here.bucket)
    finally:
        support.remove(real_node, NAMESPACE)
        install.helm_uninstall(bed)
        bed.kubectl("delete", "secret", STORE_SECRET, "-n", install.NAMESPACE, "--ignore-not-found", check=False)


def _served_files(protected: Protected) -> dict[str, bytes]:
    """The plaintext repository as the Triton container sees it, read through its root in /proc."""
    triton = support.running(protected.node, NAMESPACE, "kestrel-triton-cpu")
    repository = pathlib.Path(f"/proc/{triton['info']['pid']}/root/models/repository")
    return {str(p.relative_to(repository)): p.read_bytes() for p in repository.rglob("*") if p.is_file()}


def test_the_store_holds_only_ciphertext_of_the_engine(protected: Protected) -> None:
    objects = list(protected.store.list_objects(protected.bucket, prefix="realnode/", recursive=True))
    stored = {o.object_name: protected.store.get_object(protected.bucket, o.object_name).read() for o in objects}
    manifests = [json.loads(body) for name, body in stored.items() if name.endswith("manifest.json")]
    assert manifests, list(stored)
    assert all(m["manifest"]["algorithm"].startswith("AES256-GCM") for m in manifests), manifests
    plaintext = {path: body for path, body in _served_files(protected).items() if len(body) >= 64}
    assert any(path.endswith(".onnx") for path in plaintext), list(plaintext)
    for path, body in plaintext.items():
        for name, blob in stored.items():
            assert body[:64] not in blob and body[-64:] not in blob, f"{path} in plaintext in {name}"


def test_the_plaintext_repository_exists_only_in_the_pods_memory_volume(protected: Protected) -> None:
    triton = support.running(protected.node, NAMESPACE, "kestrel-triton-cpu")
    mounts = support.mount_table(triton)
    assert [fields[2] for fields in mounts if fields[1] == "/models"] == ["tmpfs"], mounts
    assert any(path.endswith(".onnx") for path in _served_files(protected))
    # The pod's other writable volume (/tmp, disk-backed, shared with the loader's scratch) holds no model file.
    tmp = pathlib.Path(f"/proc/{triton['info']['pid']}/root/tmp")
    assert not [p for p in tmp.rglob("*") if p.is_file() and p.suffix == ".onnx"]


def test_the_models_namespace_holds_no_store_credential_and_no_build_held_the_kek(protected: Protected) -> None:
    """What namespace A's users and pods can read: grants for its own engines, never the store's key; and the build
    pod mounted only the public half of the KEK, to which the stored engine's data key is wrapped."""
    bed = protected.node.kube.bed
    secret_key = bed.minio(for_pods=True).secret_key.encode()  # type: ignore[union-attr]
    found = json.loads(bed.kubectl("get", "secrets", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    grants = [item for item in found if item["metadata"]["name"].endswith("-grant")]
    assert grants, [item["metadata"]["name"] for item in found]
    for item in found:
        for value in (item.get("data") or {}).values():
            assert secret_key not in base64.b64decode(value), item["metadata"]["name"]
    (job,) = json.loads(bed.kubectl("get", "jobs", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    mounted = {v["secret"]["secretName"] for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert f"{protected.name}-kek-public" in mounted and "inspection-kek" not in mounted, mounted
    assert not any(name.endswith("-engine-store") for name in mounted), mounted
    objects = protected.store.list_objects(protected.bucket, prefix="realnode/", recursive=True)
    (manifest,) = [o.object_name for o in objects if o.object_name.endswith("manifest.json")]
    document = json.loads(protected.store.get_object(protected.bucket, manifest).read())
    assert document["manifest"]["wrappedKey"]["kekId"].startswith("x25519/"), document["manifest"]


def test_mutual_tls_refuses_a_client_without_the_issued_certificate(protected: Protected) -> None:
    image = infer.read_image(next(protected.work.rglob("*.png")))
    with pytest.raises(infer.InferError):
        infer.Client(protected.endpoint(client_certificate=False)).detect(image)
    with infer.Client(protected.endpoint(client_certificate=True)) as client:
        assert client.detect(image).detections


def _https_get(protected: Protected, path: str, *, client_certificate: bool, api_key: bool) -> int:
    """A GET through the Service's `https` port (the TLS proxy in the pod), verified for the Service's DNS name as
    an in-cluster client would; the HTTP status."""
    bed = protected.node.kube.bed
    service = json.loads(
        bed.kubectl("get", "service", names.service(protected.name), "-n", NAMESPACE, "-o", "json").stdout
    )
    folder = protected.work / "https"
    folder.mkdir(exist_ok=True)
    (folder / "ca.crt").write_bytes(bed.secret_value(NAMESPACE, names.tls_secret(protected.name), "ca.crt"))
    tls = ssl.create_default_context(cafile=folder / "ca.crt")
    if client_certificate:
        endpoint = protected.endpoint(client_certificate=True)
        assert endpoint.cert_file is not None and endpoint.key_file is not None
        tls.load_cert_chain(endpoint.cert_file, endpoint.key_file)
    headers = {}
    if api_key:
        key = bed.secret_value(NAMESPACE, names.api_key_secret(protected.name), transport.API_KEY_FIELD)
        headers[transport.API_KEY_HEADER] = key.decode()
    address = (service["spec"]["clusterIP"], transport.HTTPS_PORT)
    connection = http.client.HTTPConnection(*address, timeout=15)
    connection.sock = tls.wrap_socket(
        socket.create_connection(address, 15), server_hostname=f"{names.service(protected.name)}.{NAMESPACE}.svc"
    )
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_https_through_the_tls_proxy_needs_the_issued_client_certificate_and_the_api_key(protected: Protected) -> None:
    metadata = f"/v2/models/{names.triton_model(protected.name)}"  # a restricted endpoint: the key is checked
    assert _https_get(protected, metadata, client_certificate=True, api_key=True) == 200
    assert _https_get(protected, metadata, client_certificate=True, api_key=False) == 403
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https_get(protected, metadata, client_certificate=False, api_key=True)


def test_tritons_plain_http_is_closed_at_the_pods_address(protected: Protected) -> None:
    """With TLS on, Triton's HTTP listens on the pod's loopback only: from the node, the pod's address refuses
    port 8000, while the proxy's HTTPS port and its health listener answer there."""
    pods = json.loads(protected.node.kube.bed.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    (pod_ip,) = [
        p["status"]["podIP"]
        for p in pods
        if p["status"].get("phase") == "Running" and any(c["name"] == "triton" for c in p["spec"]["containers"])
    ]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((pod_ip, transport.HTTP_PORT), timeout=5).close()
    socket.create_connection((pod_ip, transport.HTTPS_PORT), timeout=5).close()
    health = http.client.HTTPConnection(pod_ip, transport.HEALTH_PORT, timeout=5)
    health.request("GET", f"/v2/models/{names.triton_model(protected.name)}/ready")
    assert health.getresponse().status == 200
    health.close()
