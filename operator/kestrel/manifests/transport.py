"""How clients reach Triton: ports, TLS on gRPC, Kestrel's TLS proxy for HTTP, and the API key.

Triton serves TLS natively on gRPC only. When TLS is on, its HTTP endpoint listens on the pod's loopback address
only, and Kestrel's TLS proxy (`kestrel tls-proxy`, from the loader image, `serving/tls_proxy.py`) is the pod's
one HTTP door: HTTPS on `https` (8443) for clients, under mutual TLS verified against the model's own client CA,
and on `health` (8081) plain answers to the kubelet's probes for Triton's liveness and readiness paths only. So
nothing outside the pod speaks plain HTTP to Triton unless `tls.mode: disabled`.
"""

from __future__ import annotations

from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import analysis, hardening, names, owners, pod_lifecycle, store_mounts

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
HTTPS_PORT = 8443
HEALTH_PORT = 8081  # the TLS proxy's plain listener for the kubelet's probes
LOOPBACK = "127.0.0.1"
TLS_DIR = "/etc/kestrel/tls"
# Under mutual TLS: the model's own client CA, the one CA whose clients Triton and the proxy accept. Only its
# certificate is projected from its Secret; the key never enters the pod.
CLIENT_CA_DIR = "/etc/kestrel/client-ca"
CLIENT_CA_FILE = f"{CLIENT_CA_DIR}/ca.crt"
API_KEY_ENV = "KESTREL_API_KEY"
API_KEY_FIELD = "api-key"  # the key of `names.api_key_secret` that holds the value
# The header name Triton checks: `kestrel-api-key` over HTTP, `triton-grpc-protocol-kestrel-api-key` over gRPC.
API_KEY_HEADER = "kestrel-api-key"
# Everything but health: the kubelet's probes carry no key, and liveness and readiness are all they call.
RESTRICTED = "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"


def tls_enabled(spec: specs.ModelDeploymentSpec) -> bool:
    return spec.security.tls.mode != "disabled"


def proxied_http(spec: specs.ModelDeploymentSpec) -> bool:
    """Whether HTTP clients go through the TLS proxy rather than to Triton directly."""
    return tls_enabled(spec) and "http" in spec.serving.protocols


def probe_port(spec: specs.ModelDeploymentSpec) -> int | str:
    """The port the kubelet probes Triton on: its own HTTP without TLS, else the TLS proxy's health listener, by
    number (the kubelet resolves a port's name among the probed container's own ports, and this one is the
    sidecar's; the pod's containers share one network namespace)."""
    return HEALTH_PORT if tls_enabled(spec) else "http"


def container_ports(spec: specs.ModelDeploymentSpec) -> list[dict[str, Any]]:
    # Without TLS, HTTP is open at the pod's address even when clients speak only gRPC: the probes need it. With
    # TLS it listens on loopback only, and is no port of the pod.
    ports = [] if tls_enabled(spec) else [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    if "grpc" in spec.serving.protocols:
        ports.append({"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"})
    ports.append({"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"})
    return ports


def server_args(spec: specs.ModelDeploymentSpec) -> list[str]:
    """Listeners, TLS and the API key, as `tritonserver` arguments."""
    grpc = "grpc" in spec.serving.protocols
    args = [
        f"--http-address={LOOPBACK}" if tls_enabled(spec) else "--http-address=0.0.0.0",
        f"--http-port={HTTP_PORT}",
        f"--allow-grpc={str(grpc).lower()}",
        "--allow-metrics=true",
        "--metrics-address=0.0.0.0",
        f"--metrics-port={METRICS_PORT}",
        f"--allow-gpu-metrics={str(spec.target.gpu is not None).lower()}",
    ]
    if analysis.needs_latency_summary(spec):
        args.append("--metrics-config=summary_latencies=true")
    if grpc:
        args += ["--grpc-address=0.0.0.0", f"--grpc-port={GRPC_PORT}", *pod_lifecycle.grpc_connection_args()]
    if grpc and tls_enabled(spec):
        args += [
            "--grpc-use-ssl=true",
            f"--grpc-server-cert={TLS_DIR}/tls.crt",
            f"--grpc-server-key={TLS_DIR}/tls.key",
            f"--grpc-root-cert={CLIENT_CA_FILE if spec.security.tls.mutual else f'{TLS_DIR}/ca.crt'}",
        ]
        if spec.security.tls.mutual:
            args.append("--grpc-use-ssl-mutual=true")
    if spec.security.access.require_api_key:
        # The kubelet expands $(VAR) from the container's env: the key stays out of the pod spec.
        restriction = f"{RESTRICTED}:{API_KEY_HEADER}=$({API_KEY_ENV})"
        args.append(f"--http-restricted-api={restriction}")
        if grpc:
            args.append(f"--grpc-restricted-protocol={restriction}")
    return args


def server_env(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> list[dict[str, Any]]:
    if not spec.security.access.require_api_key:
        return []
    secret = {"name": names.api_key_secret(owner.name), "key": API_KEY_FIELD}
    return [{"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": secret}}]


def tls_volumes(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> list[dict[str, Any]]:
    if not tls_enabled(spec):
        return []
    volumes = [store_mounts.secret_volume("tls", names.tls_secret(owner.name))]
    if spec.security.tls.mutual:
        client_ca = store_mounts.secret_volume("client-ca", names.client_ca_secret(owner.name))
        client_ca["secret"]["items"] = [{"key": "tls.crt", "path": "ca.crt"}]
        volumes.append(client_ca)
    return volumes


def tls_mounts(spec: specs.ModelDeploymentSpec) -> list[dict[str, Any]]:
    if not tls_enabled(spec):
        return []
    mounts = [store_mounts.read_only_mount("tls", TLS_DIR)]
    if spec.security.tls.mutual:
        mounts.append(store_mounts.read_only_mount("client-ca", CLIENT_CA_DIR))
    return mounts


def tls_proxy(spec: specs.ModelDeploymentSpec, settings: operator_settings.Settings) -> dict[str, Any] | None:
    """Kestrel's TLS proxy in front of Triton's loopback HTTP, or None without TLS.

    A native sidecar (an init container that restarts always): it is up before Triton starts (its startup probe
    gates Triton's start) and stays up while Triton drains, so no in-flight HTTP request loses its connection
    during a rollout. With gRPC-only clients it still runs, for the probes' health listener.
    """
    if not tls_enabled(spec):
        return None
    args = [
        "tls-proxy",
        f"--health-listen=0.0.0.0:{HEALTH_PORT}",
        f"--target={LOOPBACK}:{HTTP_PORT}",
        f"--cert={TLS_DIR}/tls.crt",
        f"--key={TLS_DIR}/tls.key",
    ]
    ports = [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}]
    if proxied_http(spec):
        args.append(f"--listen=0.0.0.0:{HTTPS_PORT}")
        ports.append({"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"})
        if spec.security.tls.mutual:
            # Only the model's own client CA: a certificate another model issued fails the handshake.
            args.append(f"--client-ca={CLIENT_CA_FILE}")

    def listening(period: int, failures: int) -> dict[str, Any]:
        return {
            "tcpSocket": {"port": "health"},
            "timeoutSeconds": 2,
            "periodSeconds": period,
            "failureThreshold": failures,
        }

    return {
        "name": "tls-proxy",
        "image": settings.loader_image,
        "command": ["kestrel"],
        "args": args,
        "restartPolicy": "Always",
        "ports": ports,
        "startupProbe": listening(1, 30),
        "livenessProbe": listening(10, 3),
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": tls_mounts(spec),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": hardening.container_security_context(),
    }
