"""The build pods' NetworkPolicy, as rendered: no ingress, egress to DNS and the ports the store and the source need,
never the metadata endpoint, and a selector that holds every build of one model and no Triton pod.

Rendered only: the test bed runs no NetworkPolicy enforcer, so nothing here shows a packet being dropped.
"""

from __future__ import annotations

from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import keys
from kestrel.api import spec as specs
from kestrel.manifests import build_job, build_network, owners, triton
from tests.unit.spec_support import UNMEASURED

OWNER = owners.Owner(name="cams", namespace="vision", uid="uid-1", generation=2)
S3 = operator_settings.Settings(engine_store="s3://engines/prod", store_credentials_secret="engine-store")
AMBIENT = operator_settings.Settings(engine_store="s3://engines/prod")
PVC = operator_settings.Settings(engine_store="pvc://engine-claim/engines")
LOCAL_SOURCE = "pvc://models/m.pt"
SHA = "ab" * 32


def parse(uri: str = LOCAL_SOURCE, **sections: Any) -> specs.ModelDeploymentSpec:
    source: dict[str, Any] = {"uri": uri}
    if uri.startswith(("https://", "s3://")):
        source["sha256"] = SHA
    return specs.parse({"model": {"source": source}, "validation": UNMEASURED, **sections})


def policy(
    spec: specs.ModelDeploymentSpec | None = None,
    settings: operator_settings.Settings = S3,
    endpoint: str | None = "https://s3.eu-west-1.amazonaws.com",
) -> dict[str, Any]:
    return build_network.network_policy(spec or parse(), OWNER, settings, endpoint)


def tcp_ports(obj: dict[str, Any]) -> set[int]:
    """The TCP ports the egress rules open, DNS left out."""
    return {
        port["port"]
        for rule in obj["spec"]["egress"]
        for port in rule["ports"]
        if port["protocol"] == "TCP" and port["port"] != build_network.DNS_PORT
    }


def selects(obj: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    selector = obj["spec"]["podSelector"]
    assert set(selector) == {"matchLabels"}  # no matchExpressions to evaluate
    return all(pod_labels.get(key) == value for key, value in selector["matchLabels"].items())


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [
        ("http://minio.storage.svc", 80),
        ("https://s3.eu-west-1.amazonaws.com", 443),
        ("http://minio.storage.svc:9000", 9000),
        ("https://objects.example.com:8443", 8443),
    ],
)
def test_an_s3_store_opens_the_port_of_the_operators_endpoint(endpoint: str, port: int) -> None:
    assert tcp_ports(policy(endpoint=endpoint)) == {port}


def test_an_s3_store_with_ambient_credentials_opens_443() -> None:
    assert tcp_ports(policy(settings=AMBIENT, endpoint=None)) == {443}


def test_a_pvc_store_and_a_local_source_leave_no_egress_at_all() -> None:
    for uri in (LOCAL_SOURCE, "file:///models/m.pt"):
        obj = policy(parse(uri), settings=PVC, endpoint=None)
        assert obj["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert obj["spec"]["egress"] == []


def test_dns_is_allowed_over_udp_and_tcp_whenever_anything_remote_is() -> None:
    (dns,) = [rule for rule in policy()["spec"]["egress"] if {"port": 53, "protocol": "UDP"} in rule["ports"]]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert build_network.CLUSTER_DNS in dns["to"]


@pytest.mark.parametrize(
    ("uri", "port"),
    [
        ("https://models.example.com/traffic/yolov8s.pt", 443),
        ("https://models.example.com:8443/traffic/yolov8s.pt", 8443),
        ("s3://models/traffic/yolov8s.pt", 443),
    ],
)
def test_a_remote_source_opens_its_port_beside_a_pvc_store(uri: str, port: int) -> None:
    assert tcp_ports(policy(parse(uri), settings=PVC, endpoint=None)) == {port}


def test_remote_datasets_open_their_ports_too() -> None:
    """An s3:// or https:// dataset is an archive the build downloads: its port is opened like the source's."""
    digest = "0" * 64
    spec = specs.parse(
        {
            "model": {"source": {"uri": "pvc://models/m.pt"}},
            "validation": {"dataset": "https://data.example.com:8443/shapes.tar.gz", "datasetSha256": digest},
            "engine": {
                "precision": "int8",
                "calibration": {"dataset": "s3://datasets/calibration.tgz", "datasetSha256": digest},
            },
        }
    )
    assert tcp_ports(policy(spec, settings=PVC, endpoint=None)) == {443, 8443}


def test_source_and_store_ports_are_opened_together_once_each() -> None:
    spec = parse("https://models.example.com:8443/m.pt")
    obj = policy(spec, endpoint="http://minio.storage.svc:9000")
    (rule,) = [rule for rule in obj["spec"]["egress"] if build_network.CLUSTER_DNS not in rule["to"]]
    assert rule["ports"] == [{"port": 8443, "protocol": "TCP"}, {"port": 9000, "protocol": "TCP"}]
    assert tcp_ports(policy(parse("s3://models/m.pt"))) == {443}


def test_an_endpoint_with_no_usable_port_opens_nothing_for_the_store() -> None:
    for endpoint in ("http://minio:notaport", "ftp://minio.storage.svc", "http://minio:0"):
        assert policy(endpoint=endpoint)["spec"]["egress"] == []


def test_no_ingress_is_admitted() -> None:
    for obj in (policy(), policy(settings=PVC, endpoint=None)):
        assert "Ingress" in obj["spec"]["policyTypes"]
        assert obj["spec"]["ingress"] == []


def test_every_egress_destination_leaves_out_the_metadata_endpoint() -> None:
    obj = policy(parse("https://models.example.com/m.pt"), endpoint="http://minio.storage.svc:9000")
    assert len(obj["spec"]["egress"]) == 2
    for rule in obj["spec"]["egress"]:
        assert rule["to"], "an empty `to` would admit every address"
        blocks = [peer["ipBlock"] for peer in rule["to"] if "ipBlock" in peer]
        assert {block["cidr"] for block in blocks} == {"0.0.0.0/0", "::/0"}
        for block in blocks:
            expected = build_network.METADATA_V4 if block["cidr"] == "0.0.0.0/0" else build_network.METADATA_V6
            assert block["except"] == [expected]
        others = [peer for peer in rule["to"] if "ipBlock" not in peer]
        assert others in ([], [build_network.CLUSTER_DNS])
    assert build_network.METADATA_V4 == "169.254.169.254/32"
    assert build_network.METADATA_V6 == "fd00:ec2::254/128"


def test_the_selector_holds_the_build_pods_of_every_engine_key_and_no_triton_pod() -> None:
    obj = policy()
    first, second = parse(), parse(engine={"format": "onnx", "precision": "fp16"})
    assert keys.engine_key(first) != keys.engine_key(second)
    for spec in (first, second):
        job = build_job.build_job(spec, OWNER, S3, keys.engine_key(spec))
        assert selects(obj, job["spec"]["template"]["metadata"]["labels"])
    key = keys.engine_key(first)
    stable = triton.deployment(first, OWNER, S3, key)
    canary = triton.canary_deployment(first, OWNER, S3, key, replicas=1)
    for deployment in (stable, canary):
        assert not selects(obj, deployment["spec"]["template"]["metadata"]["labels"])
    other_model = owners.Owner(name="cams-2", namespace="vision", uid="uid-2")
    other_job = build_job.build_job(first, other_model, S3, key)
    assert not selects(obj, other_job["spec"]["template"]["metadata"]["labels"])


def test_the_policy_is_named_labelled_and_owned_like_the_models_other_children() -> None:
    metadata = policy()["metadata"]
    assert metadata["name"] == "cams-build"
    assert metadata["namespace"] == "vision"
    assert metadata["ownerReferences"] == [OWNER.owner_reference()]
    assert metadata["labels"]["app.kubernetes.io/component"] == "build"
    assert metadata["labels"]["kestrel.dev/model"] == "cams"
