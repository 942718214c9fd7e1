"""Kestrel on the real node, installed as a user installs it: its images in the node's runtime, then `helm install`.

The chart is installed unchanged but for the values a user of this cluster would set: the engine store, and the
real node's selector and toleration (the test bed's other nodes are kwok's, which run nothing). The operator then
runs as a real pod under the chart's ServiceAccount; the build Jobs and Triton pods it creates run Kestrel's images
under runc. `pin()` gives a ModelDeployment the same placement, through its own `spec.target`.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import yaml

from kestrel import infer
from kestrel.manifests import names, transport
from testbed import claims, cluster, images, realnode

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kestrel"
# A release and namespace of their own: the process-kubelet suites apply the chart's ServiceAccount and RBAC into
# kestrel-system by hand (testbed/operator.py), which Helm would refuse to take over in the same pytest session.
RELEASE = "kestrel-real"
NAMESPACE = "kestrel-real"
SERVICE_ACCOUNT = f"{RELEASE}-operator"
# The images a CPU model needs: the operator, the CPU builder, the loader and the CPU Triton.
IMAGES = ("kestrel-operator", "kestrel-builder", "kestrel-loader", "kestrel-triton-cpu")


class InstallError(RuntimeError):
    """The chart did not install, or its operator did not start; the message carries what the cluster said."""


def load_images(bed: cluster.Testbed, names_: Sequence[str] = IMAGES) -> list[images.Image]:
    """Build (or take from the cache) Kestrel's images and import them into the real node's containerd."""
    node = bed.real_node()
    if node is None:
        raise InstallError("the test bed has no real node: start it with `up(real_node=True)`")
    built = images.ensure(names_)
    images.import_into(str(node.socket), built)
    return built


def values(engine_store: str, **extra: Any) -> dict[str, Any]:
    """The chart values of this cluster: the store, the real node's placement, and `extra`."""
    return {
        "engineStore": engine_store,
        "serviceAccount": {"name": SERVICE_ACCOUNT},
        "nodeSelector": dict(realnode.NODE_SELECTOR),
        "tolerations": [dict(realnode.TOLERATION)],
        **extra,
    }


def helm_install(bed: cluster.Testbed, chart_values: dict[str, Any], *, timeout_s: int = 300) -> None:
    """`helm upgrade --install` the chart and wait until the operator's pod is Ready."""
    values_file = bed.state_dir / "kestrel-values.yaml"
    values_file.write_text(yaml.safe_dump(chart_values))
    done = subprocess.run(
        [
            str(bed.bin_dir / "helm"),
            f"--kubeconfig={bed.kubeconfig}",
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            f"--namespace={NAMESPACE}",
            "--create-namespace",
            f"--values={values_file}",
            "--wait",
            f"--timeout={timeout_s}s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise InstallError(f"helm install failed: {done.stderr.strip()}\n{operator_diagnosis(bed)}")


def helm_uninstall(bed: cluster.Testbed) -> None:
    subprocess.run(
        [
            str(bed.bin_dir / "helm"),
            f"--kubeconfig={bed.kubeconfig}",
            "uninstall",
            RELEASE,
            f"--namespace={NAMESPACE}",
            "--wait",
            "--ignore-not-found",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def operator_pod(bed: cluster.Testbed) -> dict[str, Any] | None:
    selector = "app.kubernetes.io/component=operator"
    found = json.loads(bed.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout)["items"]
    return found[0] if found else None


def operator_diagnosis(bed: cluster.Testbed) -> str:
    """What a user would look at when the operator does not come up: its pod's state and log."""
    pod = operator_pod(bed)
    if pod is None:
        return "no operator pod exists"
    name = pod["metadata"]["name"]
    state = json.dumps(pod.get("status", {}).get("containerStatuses", []), indent=1)[-1500:]
    log = bed.kubectl("logs", "-n", NAMESPACE, name, "--tail=40", check=False)
    return f"operator pod {name}: {state}\n--- log ---\n{log.stdout or log.stderr}"


def operator_log(bed: cluster.Testbed, tail: int = 200) -> str:
    pod = operator_pod(bed)
    if pod is None:
        return ""
    done = bed.kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"], f"--tail={tail}", check=False)
    return done.stdout or done.stderr


# The build Job asks for 2 CPUs by default, which a 2-core node with the operator on it cannot grant.
BUILD_RESOURCES = {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "16Gi"}}


def pin(body: dict[str, Any]) -> dict[str, Any]:
    """`body` (a ModelDeployment) placed on the real node through its own spec.target, with a build that fits it."""
    target = body["spec"].setdefault("target", {})
    target["nodeSelector"] = {**target.get("nodeSelector", {}), **realnode.NODE_SELECTOR}
    target["tolerations"] = [*target.get("tolerations", []), dict(realnode.TOLERATION)]
    build = body["spec"].setdefault("engine", {}).setdefault("build", {})
    build.setdefault("resources", BUILD_RESOURCES)
    return body


def owned_claim(claim: str, path: pathlib.Path, namespace: str) -> list[dict[str, Any]]:
    """A hostPath claim on `path`, which the uid of Kestrel's images may write."""
    claims.open_to_pods(path)
    return claims.objects(claim, path, namespace)


def endpoint(
    bed: cluster.Testbed, namespace: str, name: str, address: str, work: pathlib.Path, *, with_key: bool = True
) -> infer.Endpoint:
    """How a client reaches the model at `address`: the operator-issued CA, the certificate's name (the Service's
    DNS name) and the API key, as a client in the model's namespace would hold them."""
    ca = work / f"{namespace}-{name}-ca.crt"
    ca.write_bytes(bed.secret_value(namespace, names.tls_secret(name), "ca.crt"))
    api_key = bed.secret_value(namespace, names.api_key_secret(name), transport.API_KEY_FIELD) if with_key else None
    return infer.Endpoint(
        address=address,
        model=names.triton_model(name),
        ca_file=ca,
        server_name=f"{names.service(name)}.{namespace}.svc",
        api_key=api_key.decode() if api_key else None,
    )


def service_endpoint(
    bed: cluster.Testbed, namespace: str, name: str, work: pathlib.Path, *, with_key: bool = True
) -> infer.Endpoint:
    """The model through its Service's ClusterIP, which kube-proxy routes to a pod from this machine too."""
    service = json.loads(bed.kubectl("get", "service", names.service(name), "-n", namespace, "-o", "json").stdout)
    address = f"{service['spec']['clusterIP']}:{transport.GRPC_PORT}"
    return endpoint(bed, namespace, name, address, work, with_key=with_key)


def wait_for(what: str, check: Any, timeout: float, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
