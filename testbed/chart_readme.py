"""charts/kestrel/README.md, generated: every value from values.yaml's comments, and how to upgrade and uninstall.

Usage: python -m testbed.chart_readme > charts/kestrel/README.md   (`make chart-readme`)

A value's description is the comment block right above its key (a blank line ends a block); its type comes from
values.schema.json, its default from values.yaml itself. Each value that holds no block of values of its own gets
a row. A value without a comment is an error, not an empty cell: the README documents every value or is not
written. tests/unit/test_chart_readme_is_generated_from_the_values.py fails when the committed file differs.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kestrel"
# Where .github/workflows/release.yaml pushes the chart (CHART_REPOSITORY).
CHART_REFERENCE = "oci://ghcr.io/kestrel-dev/charts/kestrel"
# Kopf's finalizer on every ModelDeployment (handlers/state.py).
FINALIZER = "kestrel.dev/finalizer"

_KEY_LINE = re.compile(r"(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)")
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


@dataclasses.dataclass(frozen=True)
class Value:
    """One row of the table."""

    key: str
    type: str
    default: Any
    description: str


@dataclasses.dataclass(frozen=True)
class _KeyLine:
    path: tuple[str, ...]
    inline: bool  # the value is on the key's own line (a scalar or a flow collection), not in a block below it
    comment: tuple[str, ...]


def _key_lines(text: str) -> Iterator[_KeyLine]:
    """Every mapping key of values.yaml in file order, with its dotted path and the comment block above it."""
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped[1:])
            continue
        found = _KEY_LINE.fullmatch(line)
        if not found:  # a blank line, or an item of a block sequence
            comment = []
            continue
        indent = len(found["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, found["key"]))
        rest = found["rest"].split(" #", 1)[0].strip()
        yield _KeyLine(tuple(key for _, key in stack), bool(rest), tuple(comment))
        comment = []


def _describe(comment: tuple[str, ...]) -> str:
    """Markdown for one table cell: prose joined into one paragraph, indented example lines as code."""
    prose: list[str] = []
    examples: list[str] = []
    for line in comment:
        if line.startswith("   "):
            examples.append(f"`{line.strip()}`")
        else:
            prose.append(line.strip())
    return "<br>".join([" ".join(prose), *examples]).replace("|", "\\|")


def _schema_type(schema: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    node: Mapping[str, Any] = schema
    for key in path:
        node = node.get("properties", {}).get(key, {})
    declared = node.get("type")
    if declared is None:
        return None
    return " or ".join(declared) if isinstance(declared, list) else str(declared)


def _lookup(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    found: Any = values
    for key in path:
        found = found[key]
    return found


def values(chart: pathlib.Path = CHART) -> list[Value]:
    """The table's rows, in values.yaml's order."""
    text = (chart / "values.yaml").read_text()
    loaded = yaml.safe_load(text)
    schema = json.loads((chart / "values.schema.json").read_text())
    rows: list[Value] = []
    for line in _key_lines(text):
        default = _lookup(loaded, line.path)
        if isinstance(default, dict) and default and not line.inline:
            continue  # a block of values: each gets its own row
        key = ".".join(line.path)
        if not line.comment:
            raise ValueError(f"{chart / 'values.yaml'}: {key} has no comment above it to describe it")
        kind = _schema_type(schema, line.path) or _JSON_TYPES.get(type(default), "null")
        rows.append(Value(key, kind, default, _describe(line.comment)))
    return rows


def _table(rows: list[Value]) -> str:
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in rows:
        default = json.dumps(row.default).replace("|", "\\|")
        lines.append(f"| `{row.key}` | {row.type} | `{default}` | {row.description} |")
    return "\n".join(lines)


def render(chart: pathlib.Path = CHART) -> str:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (crd,) = sorted((chart / "crds").glob("*.yaml"))
    crd_in_chart = f"crds/{crd.name}"
    plural, group = crd.stem.split(".", 1)
    return f"""<!-- Generated by testbed/chart_readme.py (make chart-readme) from values.yaml; do not edit. -->
# Kestrel Helm chart

{meta["description"]}

Chart {meta["version"]}, Kestrel {meta["appVersion"]}, Kubernetes {meta["kubeVersion"]}.

The chart installs the `{crd.stem}` CRD, the operator (one replica) with its ServiceAccount and RBAC,
a metrics Service and a NetworkPolicy. values.schema.json refuses unknown keys and bad values at install time;
`global` is accepted, so the chart also works as a subchart.

## Install

```bash
helm install kestrel {CHART_REFERENCE} --version {meta["version"]} \\
  --namespace kestrel-system --create-namespace \\
  --set engineStore=s3://my-bucket/kestrel --set storeCredentialsSecret=kestrel-store
kubectl -n kestrel-system rollout status deployment/kestrel-operator
```

## Upgrade: apply the new CRD first

`helm upgrade` does not update the CRD: Helm installs the files in a chart's `crds/` folder when the release is
first installed and never upgrades (or deletes) them. A new release of Kestrel may add fields to ModelDeployment:
until its CRD is applied the API server does not know them (kubectl refuses a spec that uses them; other clients
see them dropped). Apply the new chart's CRD, then upgrade:

```bash
VERSION=X.Y.Z   # the release you upgrade to
helm pull {CHART_REFERENCE} --version "$VERSION" --untar --untardir "kestrel-$VERSION"
kubectl apply --server-side --force-conflicts -f "kestrel-$VERSION/{meta["name"]}/{crd_in_chart}"
helm upgrade kestrel {CHART_REFERENCE} --version "$VERSION" --namespace kestrel-system --values my-values.yaml
```

From a checkout of the repository:
`kubectl apply --server-side --force-conflicts -f charts/kestrel/{crd_in_chart}`. `--force-conflicts` takes over
the fields that Helm wrote when it created the CRD: server-side apply would otherwise report each changed one as a
conflict with Helm's field manager.

## Uninstall: ModelDeployments first, then the chart, then the CRD

```bash
kubectl delete {plural}.{group} --all --all-namespaces   # waits while the operator cleans up each one
helm uninstall kestrel --namespace kestrel-system
kubectl delete crd {crd.stem}
```

The order matters because of finalizers. Every ModelDeployment carries `{FINALIZER}`, which only the
running operator removes, once it has deleted the model's engines from the engine store (owner references clean up the
objects in the cluster, not the store). Uninstall the operator first and each deletion waits on its finalizer for
ever: the ModelDeployments stay `Terminating`, and so does the CRD that is deleted after them, and the engines stay
in the store. Helm's uninstall leaves the CRD (it never deletes what `crds/` installed), so the last step is yours;
deleting the CRD deletes every ModelDeployment left. If the operator is already gone, `kubectl patch mdep NAME
--type=merge -p '{{"metadata":{{"finalizers":null}}}}'` releases one, leaving its engines in the store. Secrets are
kept on uninstall: the CA (`kestrel-ca`, from `ca` or created by the operator) and the key-encryption keys of
`encryptionKeys` (`helm.sh/resource-policy: keep`); delete them once nothing needs them.

## Values

{_table(values(chart))}
"""


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
