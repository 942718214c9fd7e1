"""Real Triton on the operator's TLS: certificates issued by the TLS reconciler, arguments from
`manifests.transport`, and gRPC clients that must get in, or must not.

The reconciler runs on an in-memory API server and a fake clock (the same pass the operator runs); its Secrets
become the files the pod would mount, and `transport.server_args` becomes Triton's command line, with the
kubelet's `$(KESTREL_API_KEY)` expansion done here. Clients dial 127.0.0.1 but verify the certificate for the
Service name `cams.vision.svc`, as an in-cluster client would.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import pathlib
import re
import socket
import ssl
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from kestrel import cli
from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import access, names, owners, secrets, transport
from kestrel.security import certificates
from testbed import triton
from tests.unit.tls_fake_kube import FakeKube, body, reconcile_tls
from tests.unit.tls_proxy_support import Running

pytestmark = pytest.mark.skipif(not triton.available(), reason="nvidia-pytriton (tritonserver) is not installed")

T0 = datetime.datetime.now(datetime.UTC)
SERVICE_NAME = "cams.vision.svc"
API_KEY = "e2e-" + "k" * 28  # a test value; the operator's is random (reconcilers.security.access)
HEADERS = {f"triton-grpc-protocol-{transport.API_KEY_HEADER}": API_KEY}
MODEL = "add"
ADD_MODEL = """
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for request in requests:
                a = pb_utils.get_input_tensor_by_name(request, "A").as_numpy()
                b = pb_utils.get_input_tensor_by_name(request, "B").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("SUM", (a + b).astype(np.float32))]))
            return out
"""
CONFIG = """
    name: "add"
    backend: "python"
    max_batch_size: 0
    input [ { name: "A" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "B" data_type: TYPE_FP32 dims: [ -1 ] } ]
    output [ { name: "SUM" data_type: TYPE_FP32 dims: [ -1 ] } ]
    instance_group [ { kind: KIND_CPU count: 1 } ]
"""


@dataclasses.dataclass
class Pki:
    """The operator's Secrets for one model, as files: what the pod mounts and what clients hold."""

    kube: FakeKube
    obj: dict[str, Any]
    root: pathlib.Path

    def mount(self, folder: str) -> pathlib.Path:
        """The TLS Secret as the kubelet would project it into the pod: tls.crt, tls.key, ca.crt; under mutual TLS
        also the model's client CA certificate (only that key of its Secret) in `client-ca/ca.crt`."""
        found = self.kube.secret("vision", names.tls_secret("cams"))
        assert found is not None
        target = self.root / folder
        target.mkdir()
        for key in ("tls.crt", "tls.key", "ca.crt"):
            (target / key).write_bytes(secrets.decode(found, key))
            (target / key).chmod(0o600)
        client_ca = self.kube.secret("vision", names.client_ca_secret("cams"))
        if client_ca is not None:
            (target / "client-ca").mkdir()
            (target / "client-ca" / "ca.crt").write_bytes(secrets.decode(client_ca, "tls.crt"))
        return target

    def client(self, subject: access.Client) -> tuple[bytes, bytes, bytes]:
        """(ca.crt, tls.key, tls.crt) of an allowed subject's client Secret."""
        owner = owners.Owner.from_body(self.obj)
        found = self.kube.secret("vision", subject.secret_name(owner))
        assert found is not None
        return (secrets.decode(found, "ca.crt"), secrets.decode(found, "tls.key"), secrets.decode(found, "tls.crt"))

    @property
    def ca(self) -> bytes:
        found = self.kube.secret("vision", names.tls_secret("cams"))
        assert found is not None
        return secrets.decode(found, "ca.crt")


GATEWAY = access.Client("ServiceAccount", "gateway", "apps")


def _pki(root: pathlib.Path, *, mutual: bool) -> Pki:
    kube = FakeKube()
    obj = body({"mutual": mutual, "duration": "90m"}, {"allowedServiceAccounts": ["apps/gateway"]})
    obj["spec"]["serving"] = {"protocols": ["grpc", "http"]}
    reconcile_tls(kube, obj, T0)
    return Pki(kube, obj, root)


def _repository(root: pathlib.Path) -> pathlib.Path:
    version = root / "repo" / MODEL / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(ADD_MODEL))
    (root / "repo" / MODEL / "config.pbtxt").write_text(textwrap.dedent(CONFIG))
    return root / "repo"


def _mounted(args: list[str], tls_dir: pathlib.Path) -> list[str]:
    """Rendered arguments with the pod's mount paths and the kubelet's key expansion done here."""
    return [
        arg.replace(f"{transport.CLIENT_CA_DIR}/", f"{tls_dir}/client-ca/")
        .replace(f"{transport.TLS_DIR}/", f"{tls_dir}/")
        .replace(f"$({transport.API_KEY_ENV})", API_KEY)
        for arg in args
    ]


def _server(pki: Pki, repository: pathlib.Path, tls_dir: pathlib.Path) -> triton.TritonServer:
    """Triton with the operator's own arguments for this spec, the mount path and the key filled in."""
    spec = specs.parse(pki.obj["spec"])
    return triton.TritonServer(repository, models=[MODEL], extra_args=_mounted(transport.server_args(spec), tls_dir))


def _proxy(pki: Pki, server: triton.TritonServer, tls_dir: pathlib.Path) -> Running:
    """The pod's TLS proxy with the arguments the operator renders for it, on ports the kernel picks, relaying
    to this Triton's HTTP listener (which the operator's arguments bind to loopback only)."""
    spec = specs.parse(pki.obj["spec"])
    sidecar = transport.tls_proxy(spec, operator_settings.Settings(engine_store="s3://engines/prod"))
    assert sidecar is not None
    args = [
        arg.replace(f"0.0.0.0:{transport.HTTPS_PORT}", "127.0.0.1:0")
        .replace(f"0.0.0.0:{transport.HEALTH_PORT}", "127.0.0.1:0")
        .replace(f"{transport.LOOPBACK}:{transport.HTTP_PORT}", server.urls["http_host"])
        for arg in _mounted(sidecar["args"], tls_dir)
    ]
    return Running(cli.tls_proxy_config(cli.build_parser().parse_args(args)))


def _https_infer(port: int, ca: bytes, client: tuple[bytes, bytes] | None, api_key: str | None = API_KEY) -> int:
    """One HTTPS inference through the proxy, as a client pod would send it; the HTTP status."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-https-"))
    (folder / "ca.crt").write_bytes(ca)
    context = ssl.create_default_context(cafile=folder / "ca.crt")
    if client is not None:
        (folder / "tls.key").write_bytes(client[0])
        (folder / "tls.crt").write_bytes(client[1])
        context.load_cert_chain(folder / "tls.crt", folder / "tls.key")
    tensor = {"shape": [4], "datatype": "FP32", "data": [0.0, 1.0, 2.0, 3.0]}
    payload = json.dumps({"inputs": [{"name": "A", **tensor}, {"name": "B", **tensor}]}).encode()
    headers = {"Content-Type": "application/json", **({transport.API_KEY_HEADER: api_key} if api_key else {})}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    # Dialled at 127.0.0.1, verified for the Service name, as an in-cluster client would.
    connection.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), 10), server_hostname=SERVICE_NAME
    )
    connection.request("POST", f"/v2/models/{MODEL}/infer", body=payload, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status == 200:
        (output,) = json.loads(body)["outputs"]
        assert output["name"] == "SUM" and output["data"] == [0.0, 2.0, 4.0, 6.0]
    return response.status


def _client(address: str, **credentials: bytes | None) -> grpcclient.InferenceServerClient:
    """A gRPC client; `credentials` (root_certificates, private_key, certificate_chain) as PEM, written to the
    files tritonclient reads them from, the way a client pod would mount its Secret."""
    if not credentials:
        return grpcclient.InferenceServerClient(address)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-client-"))
    paths: dict[str, str] = {}
    for name, pem in credentials.items():
        if pem is not None:
            (folder / name).write_bytes(pem)
            paths[name] = str(folder / name)
    return grpcclient.InferenceServerClient(
        address, ssl=True, channel_args=[("grpc.ssl_target_name_override", SERVICE_NAME)], **paths
    )


def _infer(client: grpcclient.InferenceServerClient, headers: dict[str, str] | None = HEADERS) -> None:
    a = np.arange(4, dtype=np.float32)
    inputs = [grpcclient.InferInput("A", [4], "FP32"), grpcclient.InferInput("B", [4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    result = client.infer(MODEL, inputs, headers=headers, client_timeout=10)
    np.testing.assert_array_equal(result.as_numpy("SUM"), a + a)


def _refused(client: grpcclient.InferenceServerClient, headers: dict[str, str] | None = HEADERS) -> str:
    """The gRPC status of a refused request, with its message: "StatusCode.UNAVAILABLE: Socket closed"."""
    with pytest.raises(InferenceServerException) as refused:
        _infer(client, headers)
    client.close()
    return f"{refused.value.status()}: {refused.value.message()}"


# The server ends a handshake it refuses (plain text, or no or a foreign client certificate) by closing the
# socket; the client ends one with a server it cannot verify. Either way the channel never connects.
HANDSHAKE_REFUSED = r"^StatusCode\.UNAVAILABLE: failed to connect to all addresses; .*: Socket closed$"
SERVER_UNTRUSTED = r"^StatusCode\.UNAVAILABLE: failed to connect to all addresses; .*CERTIFICATE_VERIFY_FAILED"
# Triton answers a restricted protocol without its header with UNAVAILABLE (not PERMISSION_DENIED) and says why.
KEY_REFUSED = (
    "StatusCode.UNAVAILABLE: This protocol is restricted, expecting header 'triton-grpc-protocol-kestrel-api-key'"
)


@pytest.fixture(scope="module")
def one_way(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pki, triton.TritonServer]]:
    root = tmp_path_factory.mktemp("tls")
    pki = _pki(root, mutual=False)
    with _server(pki, _repository(root), pki.mount("tls")) as server:
        server.wait_ready(MODEL, timeout=60)
        yield pki, server


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pki, triton.TritonServer]]:
    root = tmp_path_factory.mktemp("mtls")
    pki = _pki(root, mutual=True)
    with _server(pki, _repository(root), pki.mount("tls")) as server:
        server.wait_ready(MODEL, timeout=60)
        yield pki, server


def test_tls_inference_with_the_operator_ca_and_the_api_key_succeeds(one_way: tuple[Pki, triton.TritonServer]) -> None:
    pki, server = one_way
    client = _client(server.urls["grpc"], root_certificates=pki.ca)
    _infer(client)
    client.close()


def test_the_server_presents_the_operator_issued_certificate_for_the_service_name(
    one_way: tuple[Pki, triton.TritonServer],
) -> None:
    pki, server = one_way
    presented = ssl.get_server_certificate(("127.0.0.1", server.ports.grpc)).encode()
    mounted = (pki.root / "tls" / "tls.crt").read_bytes()
    assert certificates.load_certificates(presented) == certificates.load_certificates(mounted)
    ca = certificates.load_certificates(pki.ca)[0]
    certificates.verify_server(certificates.load_certificates(presented)[0], ca, dns_name=SERVICE_NAME, now=T0)


def test_a_plain_text_client_is_refused(one_way: tuple[Pki, triton.TritonServer]) -> None:
    _, server = one_way
    assert re.match(HANDSHAKE_REFUSED, _refused(_client(server.urls["grpc"])))


def test_a_client_trusting_another_ca_is_refused(one_way: tuple[Pki, triton.TritonServer]) -> None:
    _, server = one_way
    other = certificates.create_ca(now=T0).certificate_pem()
    assert re.match(SERVER_UNTRUSTED, _refused(_client(server.urls["grpc"], root_certificates=other)))


def test_a_request_without_the_api_key_is_permission_denied(one_way: tuple[Pki, triton.TritonServer]) -> None:
    pki, server = one_way
    assert _refused(_client(server.urls["grpc"], root_certificates=pki.ca), headers=None) == KEY_REFUSED
    wrong = {next(iter(HEADERS)): "not-the-key"}
    assert _refused(_client(server.urls["grpc"], root_certificates=pki.ca), headers=wrong) == KEY_REFUSED
    # Over HTTP (inside the pod, or behind the TLS proxy) the same restriction is a 403.
    request = urllib.request.Request(
        f"{server.urls['http']}/v2/models/{MODEL}/infer",
        data=b'{"inputs": []}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        urllib.request.urlopen(request, timeout=10)
    assert forbidden.value.code == 403


def test_mutual_tls_with_the_operator_issued_client_certificate_succeeds(
    mutual: tuple[Pki, triton.TritonServer],
) -> None:
    pki, server = mutual
    ca, key, chain = pki.client(GATEWAY)
    client = _client(server.urls["grpc"], root_certificates=ca, private_key=key, certificate_chain=chain)
    _infer(client)
    client.close()


def test_mutual_tls_without_a_client_certificate_is_refused(mutual: tuple[Pki, triton.TritonServer]) -> None:
    pki, server = mutual
    assert re.match(HANDSHAKE_REFUSED, _refused(_client(server.urls["grpc"], root_certificates=pki.ca)))


def test_mutual_tls_with_a_client_certificate_from_another_ca_is_refused(
    mutual: tuple[Pki, triton.TritonServer],
) -> None:
    pki, server = mutual
    stranger = certificates.issue_client(certificates.create_ca(now=T0), common_name=GATEWAY.common_name, now=T0)
    client = _client(
        server.urls["grpc"],
        root_certificates=pki.ca,
        private_key=stranger.private_key_pem(),
        certificate_chain=stranger.certificate_pem(),
    )
    assert re.match(HANDSHAKE_REFUSED, _refused(client))


def test_mutual_tls_with_the_client_certificate_another_model_issued_to_the_same_subject_is_refused(
    mutual: tuple[Pki, triton.TritonServer],
) -> None:
    """The other model's reconciler ran on the same operator CA (the same fake cluster) for the same subject: its
    certificate names the same identity, and is still refused, since only this model's client CA is trusted."""
    pki, server = mutual
    other = body({"mutual": True, "duration": "90m"}, {"allowedServiceAccounts": ["apps/gateway"]}, name="doors")
    reconcile_tls(pki.kube, other, T0)
    found = pki.kube.secret("vision", GATEWAY.secret_name(owners.Owner.from_body(other)))
    assert found is not None
    ca, key, chain = (secrets.decode(found, k) for k in ("ca.crt", "tls.key", "tls.crt"))
    assert ca == pki.ca  # both trust the same server CA: only the client side is per model
    client = _client(server.urls["grpc"], root_certificates=ca, private_key=key, certificate_chain=chain)
    assert re.match(HANDSHAKE_REFUSED, _refused(client))


def test_mutual_tls_still_needs_the_api_key(mutual: tuple[Pki, triton.TritonServer]) -> None:
    pki, server = mutual
    ca, key, chain = pki.client(GATEWAY)
    client = _client(server.urls["grpc"], root_certificates=ca, private_key=key, certificate_chain=chain)
    assert _refused(client, headers=None) == KEY_REFUSED


@pytest.fixture(scope="module")
def https(mutual: tuple[Pki, triton.TritonServer]) -> Iterator[tuple[Pki, triton.TritonServer, Running]]:
    pki, server = mutual
    proxy = _proxy(pki, server, pki.root / "tls")
    yield pki, server, proxy
    proxy.close()


def test_https_through_the_tls_proxy_with_the_issued_client_certificate_and_the_api_key_infers(
    https: tuple[Pki, triton.TritonServer, Running],
) -> None:
    pki, _, proxy = https
    ca, key, chain = pki.client(GATEWAY)
    assert _https_infer(proxy.port("https"), ca, (key, chain)) == 200


def test_https_with_the_client_certificate_another_model_issued_to_the_same_subject_is_refused(
    https: tuple[Pki, triton.TritonServer, Running],
) -> None:
    pki, _, proxy = https
    other = body({"mutual": True, "duration": "90m"}, {"allowedServiceAccounts": ["apps/gateway"]}, name="gates")
    reconcile_tls(pki.kube, other, T0)
    found = pki.kube.secret("vision", GATEWAY.secret_name(owners.Owner.from_body(other)))
    assert found is not None
    ca, key, chain = (secrets.decode(found, k) for k in ("ca.crt", "tls.key", "tls.crt"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https_infer(proxy.port("https"), ca, (key, chain))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https_infer(proxy.port("https"), ca, None)


def test_https_without_the_api_key_is_forbidden_by_triton_behind_the_proxy(
    https: tuple[Pki, triton.TritonServer, Running],
) -> None:
    pki, _, proxy = https
    ca, key, chain = pki.client(GATEWAY)
    assert _https_infer(proxy.port("https"), ca, (key, chain), api_key=None) == 403


def test_the_kubelets_probes_reach_tritons_readiness_through_the_proxys_plain_health_listener(
    https: tuple[Pki, triton.TritonServer, Running],
) -> None:
    """Where Triton's HTTP listens is proven on the real node (this harness binds every listener to loopback)."""
    _, _, proxy = https
    health = http.client.HTTPConnection("127.0.0.1", proxy.port("health"), timeout=10)
    health.request("GET", f"/v2/models/{MODEL}/ready")
    assert health.getresponse().status == 200
    health.close()


class Loop:
    """A client that infers without pause against whichever server the "Service" points at, and counts."""

    def __init__(self, ca: bytes, address: str) -> None:
        self.ca = ca
        self.address = address
        self.ok: dict[str, int] = {}
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients: dict[str, grpcclient.InferenceServerClient] = {}
        while not self.stop.is_set():
            address = self.address
            if address not in clients:
                clients[address] = _client(address, root_certificates=self.ca)
            try:
                _infer(clients[address])
                self.ok[address] = self.ok.get(address, 0) + 1
            except (InferenceServerException, AssertionError) as error:
                self.failures.append(f"{address}: {error}")
        for client in clients.values():
            client.close()

    def wait_for(self, address: str, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.ok.get(address, 0) < count:
            assert time.monotonic() < deadline, f"{address}: {self.ok.get(address, 0)} successes; {self.failures[:3]}"
            time.sleep(0.05)


def test_a_client_loop_sees_no_failure_across_a_certificate_rotation(tmp_path: pathlib.Path) -> None:
    """What this proves: the operator renews at its renewal point into the same Secret with a new checksum, a
    client that trusts the operator CA (not a pinned certificate) accepts the renewed certificate, and a roll
    that starts the new pod before stopping the old (maxUnavailable 0) loses no request. The Service switch is
    played by the test (the loop moves to the new pod once it is ready), not by kube-proxy.
    """
    kube = FakeKube()
    obj = body({"duration": "90m"})
    # The first certificate was issued one renewal period ago, so the renewal point is the real now: Triton and
    # the client check validity on the real clock, and a renewed certificate must be valid when it is served.
    due = datetime.timedelta(minutes=59, seconds=40)
    issued_at = datetime.datetime.now(datetime.UTC) - due
    before = reconcile_tls(kube, obj, issued_at)
    assert reconcile_tls(kube, obj, issued_at + due - datetime.timedelta(seconds=1)).tls_checksum == before.tls_checksum
    pki = Pki(kube, obj, tmp_path)
    repository = _repository(tmp_path)
    with _server(pki, repository, pki.mount("tls-1")) as old:
        old.wait_ready(MODEL, timeout=60)
        loop = Loop(pki.ca, old.urls["grpc"])
        loop.thread.start()
        try:
            loop.wait_for(old.urls["grpc"], 20)
            # The renewal point passes: the one reconcile that sees it renews, and the pod template changes.
            renewing = reconcile_tls(kube, obj, issued_at + due)
            assert renewing.tls_checksum != before.tls_checksum
            with _server(pki, repository, pki.mount("tls-2")) as new:
                new.wait_ready(MODEL, timeout=60)
                loop.address = new.urls["grpc"]
                loop.wait_for(new.urls["grpc"], 20)
                old.stop()
                presented = ssl.get_server_certificate(("127.0.0.1", new.ports.grpc)).encode()
                assert presented == (tmp_path / "tls-2" / "tls.crt").read_bytes()
                assert presented != (tmp_path / "tls-1" / "tls.crt").read_bytes()
                served = loop.ok[new.urls["grpc"]]
                loop.wait_for(new.urls["grpc"], served + 20)
                # The loop ends before the new server does: that server's shutdown is not part of the rotation.
                loop.stop.set()
                loop.thread.join(timeout=30)
        finally:
            loop.stop.set()
            loop.thread.join(timeout=30)
    assert loop.failures == []
    assert loop.ok[old.urls["grpc"]] >= 20


def test_a_removed_subjects_certificate_is_refused_once_the_pods_have_the_new_client_ca(tmp_path: pathlib.Path) -> None:
    """Removing a subject replaces the model's client CA in the same pass and changes the pod template; Triton
    started with the new projection (the rolled pod) refuses the removed subject's still unexpired certificate and
    accepts the remaining subject's reissued one."""
    kube = FakeKube()
    access_spec = {"allowedServiceAccounts": ["apps/gateway", "apps/dashboard"]}
    obj = body({"mutual": True, "duration": "90m"}, access_spec)
    before = reconcile_tls(kube, obj, T0)
    pki = Pki(kube, obj, tmp_path)
    dashboard = access.Client("ServiceAccount", "dashboard", "apps")
    revoked = pki.client(dashboard)
    repository = _repository(tmp_path)
    with _server(pki, repository, pki.mount("tls-1")) as old:
        old.wait_ready(MODEL, timeout=60)
        ca, key, chain = revoked
        _infer(_client(old.urls["grpc"], root_certificates=ca, private_key=key, certificate_chain=chain))
    obj["spec"]["security"]["access"] = {"allowedServiceAccounts": ["apps/gateway"]}
    after = reconcile_tls(kube, obj, T0 + datetime.timedelta(seconds=30))
    assert after.tls_checksum != before.tls_checksum  # the pods roll
    with _server(pki, repository, pki.mount("tls-2")) as new:
        new.wait_ready(MODEL, timeout=60)
        ca, key, chain = revoked
        refused = _client(new.urls["grpc"], root_certificates=ca, private_key=key, certificate_chain=chain)
        assert re.match(HANDSHAKE_REFUSED, _refused(refused))
        ca, key, chain = pki.client(GATEWAY)
        kept = _client(new.urls["grpc"], root_certificates=ca, private_key=key, certificate_chain=chain)
        _infer(kept)
        kept.close()
