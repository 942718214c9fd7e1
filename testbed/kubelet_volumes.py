"""A pod's volumes as local folders, and a container's view of them as a path translation.

There is no mount namespace here, so a container cannot see `/models` or `/etc/kestrel/tls`. Instead each
pod gets a folder, each volume a folder in it, and each container a root folder; a container's mount paths
(and its termination-message file) are translated by prefix, longest first, wherever they appear at the start
of a command-line argument, an environment value, after `=`, `:` or `,` (`--flag=/models`, `PATH`-style
lists), or after `file://`. Paths that no mount covers stay as they are: they name this machine's files
(a folder that only holds mounts is the exception, see `Mounts`).

Volume kinds: emptyDir (medium Memory under /dev/shm, so plaintext stays in RAM as the pod asks), secret,
configMap and downwardAPI materialised as files, projected (their union, plus a real bound service-account
token from the TokenRequest API), persistentVolumeClaim (the bound PV's hostPath/local path when it has one,
else a folder per claim shared by all this kubelet's pods). hostPath and anything else are refused.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import re
import shutil
from collections.abc import Mapping

from testbed.kubelet_api import Api, Body

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
SHM = pathlib.Path("/dev/shm")  # memory-backed emptyDirs live in tmpfs on purpose
_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class VolumeError(RuntimeError):
    """A volume cannot be made (yet): a missing Secret or ConfigMap; the kubelet retries."""


class RefusedError(RuntimeError):
    """The pod asks for something this kubelet will not do (hostPath, an unknown volume kind)."""


@dataclasses.dataclass
class PodLayout:
    """Where one pod lives on disk: `<root>/<uid>/{volumes,containers}`, tmpfs folders, and its logs."""

    root: pathlib.Path
    pod: Body
    pod_ip: str = "10.246.0.1"
    volumes: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)
    _tmpfs: list[pathlib.Path] = dataclasses.field(default_factory=list)

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def directory(self) -> pathlib.Path:
        return self.root / self.uid

    def container_root(self, name: str) -> pathlib.Path:
        path = self.directory / "containers" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, name: str) -> pathlib.Path:
        # Outside the pod's folder: logs outlive the pod (there is no `kubectl logs`), until the kubelet stops.
        meta = self.pod["metadata"]
        path = self.root.parent / "logs" / f"{self.namespace}_{meta['name']}_{self.uid}" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def materialise(self, api: Api) -> None:
        """Create every volume; VolumeError while a source is missing, RefusedError for what is not supported."""
        for volume in self.pod["spec"].get("volumes") or []:
            if volume["name"] not in self.volumes:
                self.volumes[volume["name"]] = self._volume(api, volume)

    def _volume(self, api: Api, volume: Body) -> pathlib.Path:
        name = str(volume["name"])
        target = self.directory / "volumes" / name
        if "emptyDir" in volume:
            if (volume["emptyDir"] or {}).get("medium") == "Memory" and SHM.is_dir():
                target = SHM / f"kestrel-kubelet-{self.uid}-{name}"
                self._tmpfs.append(target)
            target.mkdir(parents=True, exist_ok=True)
            return target
        if "persistentVolumeClaim" in volume:
            return self._claim(api, volume["persistentVolumeClaim"]["claimName"])
        if "hostPath" in volume:
            raise RefusedError(f"volume {name!r}: hostPath is refused (a pod must not reach into this machine)")
        sources = _projections(volume)
        if sources is None:
            kinds = sorted(set(volume) - {"name"})
            raise RefusedError(f"volume {name!r}: kind {kinds} is not supported by the process kubelet")
        files: dict[str, tuple[bytes, int | None]] = {}
        for source in sources:
            files |= self._files(api, source, name)
        target.mkdir(parents=True, exist_ok=True)
        default_mode = (volume.get("secret") or volume.get("configMap") or volume.get("projected") or {}).get(
            "defaultMode", 0o644
        )
        for relative, (content, mode) in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode if mode is not None else default_mode)
        return target

    def _files(self, api: Api, source: Body, volume: str) -> dict[str, tuple[bytes, int | None]]:
        kind, spec = next(iter(source.items()))
        if kind in ("secret", "configMap"):
            name = spec.get("secretName") or spec.get("name")
            body = api.secret(self.namespace, name) if kind == "secret" else api.config_map(self.namespace, name)
            if body is None:
                if spec.get("optional"):
                    return {}
                raise VolumeError(f'volume {volume!r}: {kind} "{name}" not found')
            data = _data(body, kind)
            items = spec.get("items") or [{"key": key, "path": key} for key in data]
            missing = [item["key"] for item in items if item["key"] not in data]
            if missing and not spec.get("optional"):
                raise VolumeError(f'volume {volume!r}: {kind} "{name}" has no key {missing}')
            return {i["path"]: (data[i["key"]], i.get("mode")) for i in items if i["key"] in data}
        if kind == "downwardAPI":
            return {item["path"]: (self.field(item).encode(), item.get("mode")) for item in spec.get("items", [])}
        if kind == "serviceAccountToken":
            return {spec["path"]: (self._token(api, spec).encode(), None)}
        raise RefusedError(f"volume {volume!r}: projection {kind!r} is not supported")

    def field(self, item: Body) -> str:
        """A downward-API value: metadata fields and single labels or annotations."""
        if "fieldRef" not in item:
            raise RefusedError(f"downward API item {item.get('path')!r}: only fieldRef is supported")
        path = item["fieldRef"]["fieldPath"]
        metadata = self.pod["metadata"]
        if match := _FIELD.fullmatch(path):
            return str((metadata.get(match[1]) or {}).get(match[2], ""))
        if path in ("metadata.labels", "metadata.annotations"):
            values = metadata.get(path.split(".")[1]) or {}
            return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))
        simple = {
            "metadata.name": metadata["name"],
            "metadata.namespace": metadata["namespace"],
            "metadata.uid": metadata["uid"],
            "spec.nodeName": self.pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", ""),
            "status.podIP": self.pod_ip,
            "status.hostIP": "127.0.0.1",
        }
        if path not in simple:
            raise RefusedError(f"downward API field {path!r} is not supported")
        return str(simple[path])

    def _token(self, api: Api, spec: Body) -> str:
        account = self.pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [spec["audience"]] if spec.get("audience") else None,
                "expirationSeconds": spec.get("expirationSeconds", 3607),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.pod["metadata"]["name"]},
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        answer = api.request("POST", path, body=body) or {}
        return str(answer.get("status", {}).get("token", ""))

    def _claim(self, api: Api, claim: str) -> pathlib.Path:
        body = api.get(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}")
        if body is None:
            raise VolumeError(f'persistentVolumeClaim "{claim}" not found')
        volume_name = body.get("spec", {}).get("volumeName")
        pv = api.get(f"/api/v1/persistentvolumes/{volume_name}") if volume_name else None
        # A PV is the administrator's choice of where data lives, unlike a pod's hostPath.
        local = ((pv or {}).get("spec", {}).get("hostPath") or (pv or {}).get("spec", {}).get("local") or {}).get(
            "path"
        )
        target = pathlib.Path(local) if local else self.root.parent / "claims" / self.namespace / claim
        target.mkdir(parents=True, exist_ok=True)
        return target

    def remove(self) -> None:
        for path in [*self._tmpfs, self.directory]:
            shutil.rmtree(path, ignore_errors=True)


def _projections(volume: Body) -> list[Body] | None:
    for kind in ("secret", "configMap", "downwardAPI"):
        if kind in volume:
            return [{kind: volume[kind]}]
    if "projected" in volume:
        return list(volume["projected"].get("sources") or [])
    return None


def _data(body: Body, kind: str) -> dict[str, bytes]:
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (body.get("data") or {}).items()}
    return data | {k: base64.b64decode(v) for k, v in (body.get("binaryData") or {}).items()}


class Mounts:
    """One container's mount table: container paths to local paths, and the translation they imply.

    A folder that only holds mounts (`/mnt/pvc` above `/mnt/pvc/<claim>`) is named on its own in arguments like
    `--pvc-root /mnt/pvc`; the container's root folder mirrors it with symlinks to the mounts, and such a
    folder translates there when it stands alone (not when a path continues below it: `/etc/ssl/…` must stay
    the host's even when `/etc/kestrel` is a mount).
    """

    def __init__(self, table: Mapping[str, pathlib.Path], rootfs: pathlib.Path | None = None) -> None:
        clean = {p.rstrip("/") or "/": str(local) for p, local in table.items()}
        self.table = sorted(clean.items(), key=lambda t: -len(t[0]))
        self.parents: dict[str, str] = {}
        if rootfs is not None:
            for container_path, local in clean.items():
                above = {str(parent) for parent in pathlib.PurePosixPath(container_path).parents}
                if above & clean.keys():
                    continue  # a mount inside a mount: a link would land in the outer volume's files
                link = rootfs / container_path.lstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(local)
                for parent in pathlib.PurePosixPath(container_path).parents:
                    if str(parent) != "/" and str(parent) not in clean:
                        self.parents[str(parent)] = str(rootfs / str(parent).lstrip("/"))

    @classmethod
    def of(cls, layout: PodLayout, container: Body) -> Mounts:
        root = layout.container_root(container["name"])
        termination = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        table = {termination: root / "termination-log"}
        for mount in container.get("volumeMounts") or []:
            local = layout.volumes[mount["name"]] / mount.get("subPath", "")
            if mount.get("subPath"):
                local.mkdir(parents=True, exist_ok=True)
            table[mount["mountPath"]] = local
        return cls(table, root / "rootfs")

    def path(self, container_path: str) -> pathlib.Path:
        return pathlib.Path(self.translate(container_path))

    def translate(self, text: str) -> str:
        out: list[str] = []
        index = 0
        while index < len(text):
            replaced = self._at(text, index)
            if replaced is None:
                out.append(text[index])
                index += 1
            else:
                local, length = replaced
                out.append(local)
                index += length
        return "".join(out)

    def _at(self, text: str, index: int) -> tuple[str, int] | None:
        if text[index] != "/" or not (index == 0 or text[index - 1] in "=:, " or text[:index].endswith("file://")):
            return None
        for container_path, local in self.table:
            end = index + len(container_path)
            if text.startswith(container_path, index) and (end == len(text) or text[end] in "/:, "):
                return local, len(container_path)
        for parent, local in self.parents.items():
            end = index + len(parent)
            if text.startswith(parent, index) and (end == len(text) or text[end] in ":, "):
                return local, len(parent)
        return None


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` is a literal `$`, others stay."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _VAR.sub(one, text)


def environment(
    api: Api, layout: PodLayout, container: Body, mounts: Mounts, base: Mapping[str, str]
) -> dict[str, str]:
    """`base`, then envFrom, then env in order (values translated, then `$(VAR)`-expanded as the kubelet does)."""
    env = dict(base)
    namespace = layout.namespace
    for source in container.get("envFrom") or []:
        kind = "secret" if "secretRef" in source else "configMap"
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        body = api.secret(namespace, ref["name"]) if kind == "secret" else api.config_map(namespace, ref["name"])
        if body is None and not ref.get("optional"):
            raise VolumeError(f'envFrom: {kind} "{ref["name"]}" not found')
        for key, content in _data(body or {}, kind).items():
            env[source.get("prefix", "") + key] = content.decode(errors="replace")
    for var in container.get("env") or []:
        if "value" in var or "valueFrom" not in var:
            env[var["name"]] = expand(mounts.translate(var.get("value", "")), env)
        else:
            value = _value_from(api, layout, var["name"], var["valueFrom"])
            if value is not None:
                env[var["name"]] = value
    return env


def _value_from(api: Api, layout: PodLayout, name: str, source: Body) -> str | None:
    for kind, key in (("secret", "secretKeyRef"), ("configMap", "configMapKeyRef")):
        if key in source:
            ref = source[key]
            body = (
                api.secret(layout.namespace, ref["name"])
                if kind == "secret"
                else api.config_map(layout.namespace, ref["name"])
            )
            data = _data(body or {}, kind)
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise VolumeError(f'env {name}: {kind} "{ref["name"]}" key {ref["key"]!r} not found')
            return data[ref["key"]].decode(errors="replace")
    if "fieldRef" in source:
        return layout.field(source)
    raise RefusedError(f"env {name}: valueFrom {sorted(source)} is not supported")
