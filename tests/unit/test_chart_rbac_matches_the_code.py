"""The chart's RBAC rules are exactly what the operator calls: derived from the code, compared both ways.

What the code calls is read from its source, not from a list kept beside the chart: every literal
`kube.get/list/delete(apiVersion, kind, ...)` in reconcilers/, runtime/ and handlers/, every object kind built by the
manifests modules the reconcilers apply, the status patch and the Events of kube/client.py, and what Kopf
itself needs to watch and annotate the resource. Every kind must be in kube/resources.py's table.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import pytest
import yaml

from kestrel.api import crd
from kestrel.kube import resources

ROOT = pathlib.Path(__file__).parents[2]
PACKAGE = ROOT / "operator" / "kestrel"
RULES = ROOT / "charts" / "kestrel" / "files" / "operator-rules.yaml"
CALLERS = ("reconcilers", "runtime", "handlers")
# Server-side apply creates what is absent and patches what exists. The client reads a child before it first writes
# or deletes it, to leave alone an object of that name the model does not own (kube/ownership.py).
VERBS_OF_CALL = {
    "get": {"get"},
    "list": {"list"},
    "delete": {"get", "delete"},
    "apply": {"get", "create", "patch"},
    "create": {"create"},
}
# Calls whose object is built by a manifests module, not named by literal arguments.
BUILT_OBJECT_CALLS = {"apply", "create"}
# Kopf, not Kestrel's client: it lists and watches the resource and the CRDs that define it, patches its
# annotations and finalizer (AnnotationsProgressStorage), and posts Events of warning level.
KOPF_NEEDS = {
    ("kestrel.dev", crd.PLURAL): {"list", "watch", "patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("", "events"): {"create"},
    # handlers/owned.py: the Deployments the operator applies, watched for status changes and drift.
    ("apps", "deployments"): {"list", "watch"},
}
# The client's own calls: status through the status subresource, Events through core v1, a fresh ModelDeployment.
CLIENT_NEEDS = {
    ("kestrel.dev", f"{crd.PLURAL}/status"): {"patch"},
    # Kube.get_model_deployment; Kube.remove_model_deployment_annotation, once a pass answered a canary request.
    ("kestrel.dev", crd.PLURAL): {"get", "patch"},
    ("", "events"): {"create"},
    ("", "pods/log"): {"get"},  # Kube.pod_log_tail
}

Grants = dict[tuple[str, str], set[str]]


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _resource(api_version: str, kind: str) -> tuple[str, str]:
    found = resources.lookup(api_version, kind)  # a kind outside the table fails here, naming itself
    return _group(found.api_version), found.plural


def _trees(folder: str) -> Iterator[tuple[pathlib.Path, ast.Module]]:
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _is_kube(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "kube") or (
        isinstance(node, ast.Name) and node.id == "kube"
    )


def _module_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _constants_in_scope(tree: ast.Module) -> dict[str, str]:
    """The module's string constants, and `module.NAME` for each kestrel module it imports."""
    constants = _module_constants(tree)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kestrel."):
            for alias in node.names:
                source = PACKAGE.joinpath(*node.module.split(".")[1:], f"{alias.name}.py")
                if source.is_file():
                    for name, value in _module_constants(ast.parse(source.read_text())).items():
                        constants[f"{alias.asname or alias.name}.{name}"] = value
    return constants


def _kube_calls() -> Iterator[tuple[str, ast.Call, pathlib.Path, dict[str, str]]]:
    for folder in CALLERS:
        for path, tree in _trees(folder):
            constants = _constants_in_scope(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and _is_kube(node.func.value)
                    and node.func.attr in VERBS_OF_CALL
                ):
                    yield node.func.attr, node, path, constants


def _applied_modules() -> set[str]:
    """The manifests modules a reconciler imports: the objects it applies are built there."""
    modules: set[str] = set()
    for _, tree in _trees("reconcilers"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "kestrel.manifests":
                modules.update(alias.name for alias in node.names)
    return modules


def _constant(node: ast.expr, module_constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return module_constants.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return module_constants.get(f"{node.value.id}.{node.attr}")
    return None


def _built_kinds(module: str) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every whole object a manifests module builds: a dict with metadata."""
    tree = ast.parse((PACKAGE / "manifests" / f"{module}.py").read_text())
    constants = _module_constants(tree)
    kinds: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        fields = {
            key.value: value for key, value in zip(node.keys, node.values, strict=True) if isinstance(key, ast.Constant)
        }
        if {"apiVersion", "kind", "metadata"} <= fields.keys():
            api_version, kind = _constant(fields["apiVersion"], constants), _constant(fields["kind"], constants)
            assert api_version and kind, f"manifests/{module}.py builds an object whose apiVersion/kind is not literal"
            kinds.add((api_version, kind))
    return kinds


def _merge(into: Grants, more: Grants) -> None:
    for key, verbs in more.items():
        into.setdefault(key, set()).update(verbs)


def used_by_the_code() -> Grants:
    grants: Grants = {}
    for verb, call, path, constants in _kube_calls():
        if verb in BUILT_OBJECT_CALLS:
            continue
        api_version, kind = (_constant(arg, constants) for arg in call.args[:2])
        assert api_version and kind, f"{path.name}:{call.lineno}: kube.{verb} with a non-literal apiVersion or kind"
        _merge(grants, {_resource(api_version, kind): VERBS_OF_CALL[verb]})
    if any(verb in BUILT_OBJECT_CALLS for verb, *_ in _kube_calls()):
        for module in sorted(_applied_modules()):
            for api_version, kind in _built_kinds(module):
                _merge(grants, {_resource(api_version, kind): VERBS_OF_CALL["apply"]})
    _merge(grants, KOPF_NEEDS)
    _merge(grants, CLIENT_NEEDS)
    return grants


def granted(section: str) -> Grants:
    grants: Grants = {}
    for rule in yaml.safe_load(RULES.read_text())[section]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                _merge(grants, {(group, resource): set(rule["verbs"])})
    return grants


def test_the_code_is_read() -> None:
    # Guards the derivation itself: if the scan found nothing, the comparison below would prove nothing.
    used = used_by_the_code()
    assert used[("", "secrets")] >= {"get", "create", "patch"}
    assert used[("batch", "jobs")] >= {"get", "create", "patch"}
    assert ("apps", "deployments") in used


def test_chart_grants_exactly_what_the_code_calls() -> None:
    chart: Grants = {}
    _merge(chart, granted("cluster"))
    _merge(chart, granted("namespaced"))
    used = used_by_the_code()
    missing = {
        key: sorted(verbs - chart.get(key, set())) for key, verbs in used.items() if verbs - chart.get(key, set())
    }
    unused = {key: sorted(verbs - used.get(key, set())) for key, verbs in chart.items() if verbs - used.get(key, set())}
    assert not missing, f"the operator calls these but files/operator-rules.yaml does not grant them: {missing}"
    assert not unused, f"files/operator-rules.yaml grants these but no code path calls them: {unused}"


def test_cluster_scoped_kinds_are_granted_by_the_cluster_role_only() -> None:
    cluster_scoped = {(_group(r.api_version), r.plural) for r in resources._KNOWN if not r.namespaced}
    assert set(granted("cluster")) <= cluster_scoped
    assert not set(granted("namespaced")) & cluster_scoped
    assert set(granted("namespaceWatch")) == {("", "namespaces")}


def test_operator_namespace_role_covers_its_ca_secret() -> None:
    # reconcilers/security/tls.py reads and creates the CA in the operator's namespace, even in namespace-scoped mode.
    assert granted("operatorNamespace") == {("", "secrets"): {"get", "create", "patch"}}


def test_leader_election_role_covers_exactly_the_lease_calls() -> None:
    # kube/lease.py: Kube.get, Kube.create and Kube.replace (a PUT: `update`) of its one Lease, nothing else.
    source = (PACKAGE / "kube" / "lease.py").read_text()
    calls = {verb for verb in ("get", "create", "replace", "apply", "delete", "list") if f"kube.{verb}(" in source}
    assert calls == {"get", "create", "replace"}
    assert granted("leaderElection") == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}


@pytest.mark.parametrize("section", ["cluster", "namespaced", "namespaceWatch", "operatorNamespace", "leaderElection"])
def test_no_wildcards(section: str) -> None:
    for (group, resource), verbs in granted(section).items():
        assert "*" not in (group, resource) and "*" not in verbs, (section, group, resource, verbs)
