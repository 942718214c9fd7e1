"""The release workflow publishes one signed image per Dockerfile, as the chart names them, and the chart itself.

The workflow runs only on GitHub, so it is read here as data: its image matrix against docker/*.Dockerfile's labels
and charts/kestrel, its action pins, platforms, SBOM, provenance and signatures. actionlint (`make lint`) checks
its syntax, expressions and shell scripts.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import yaml

from tests.unit.helm_support import CHART, ROOT, find, render

WORKFLOW = ROOT / ".github" / "workflows" / "release.yaml"
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
SHA = re.compile(r"[0-9a-f]{40}")
# Actions that may be used by tag rather than commit SHA, each with the reason. Empty: every action is pinned.
UNPINNED_ALLOWED: dict[str, str] = {}


def _workflow() -> dict[str | bool, Any]:
    # PyYAML reads YAML 1.1, where the workflow's key `on` is the boolean true.
    loaded: dict[str | bool, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _steps(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == uses]


def _step(job: dict[str, Any], uses: str) -> dict[str, Any]:
    (found,) = _steps(job, uses)
    return found


def _labels(dockerfile: pathlib.Path) -> dict[str, str]:
    """The final stage's LABELs (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    final = text[text.rindex("\nFROM ") :]
    return dict(re.findall(r'([\w.-]+)="([^"]*)"', " ".join(re.findall(r"^LABEL (.*)$", final, flags=re.MULTILINE))))


def _expand(template: str, context: dict[str, str]) -> str:
    """GitHub's `${{ name }}` substitutions; an expression this test does not know fails it."""
    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: context[m.group(1)], template)


def _chart_values() -> tuple[str, str]:
    registry = yaml.safe_load((CHART / "values.yaml").read_text())["images"]["registry"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    return registry, app_version


def _published(version: str) -> set[str]:
    """The image references the workflow pushes, for a release of this version."""
    workflow = _workflow()
    images = workflow["jobs"]["images"]
    tags = _step(images, "docker/build-push-action")["with"]["tags"]
    published = set()
    for entry in images["strategy"]["matrix"]["include"]:
        context = {
            "env.REGISTRY": workflow["env"]["REGISTRY"],
            "needs.version.outputs.version": version,
            **{f"matrix.{key}": value for key, value in entry.items()},
        }
        published |= {t.strip() for t in re.split(r"[,\n]", _expand(tags, context)) if t.strip()}
    return published


def test_publishes_one_image_per_dockerfile_under_the_chart_registry_and_tag() -> None:
    registry, app_version = _chart_values()
    expected = {
        f"{registry}/{_labels(p)['org.opencontainers.image.title']}:{app_version}{_labels(p)['dev.kestrel.image.tag-suffix']}"
        for p in DOCKERFILES
    }
    assert len(expected) == len(DOCKERFILES), "two Dockerfiles build the same image reference"
    assert _published(app_version) == expected


def test_each_matrix_entry_builds_the_dockerfile_that_labels_it() -> None:
    entries = _workflow()["jobs"]["images"]["strategy"]["matrix"]["include"]
    assert sorted(e["dockerfile"] for e in entries) == sorted(str(p.relative_to(ROOT)) for p in DOCKERFILES)
    for entry in entries:
        labels = _labels(ROOT / entry["dockerfile"])
        assert entry["image"] == labels["org.opencontainers.image.title"], entry["dockerfile"]
        assert entry["suffix"] == labels["dev.kestrel.image.tag-suffix"], entry["dockerfile"]


def test_every_kestrel_image_the_chart_renders_is_published() -> None:
    registry, app_version = _chart_values()
    (container,) = find(render(), "Deployment")["spec"]["template"]["spec"]["containers"]
    pulled = {container["image"]} | {
        e["value"] for e in container["env"] if e["name"].endswith("_IMAGE") and e["value"].startswith(f"{registry}/")
    }
    assert pulled - _published(app_version) == set()


def test_the_chart_is_published_beside_the_images_and_pulls_them() -> None:
    workflow = _workflow()
    registry, _ = _chart_values()
    assert workflow["env"]["REGISTRY"] == registry
    assert workflow["env"]["CHART_REPOSITORY"] == f"{registry}/charts"
    chart = workflow["jobs"]["chart"]
    assert "images" in chart["needs"], "the chart must not be published before the images it pulls"
    script = next(s["run"] for s in chart["steps"] if "helm push" in s.get("run", ""))
    # appVersion is the images' tag (charts/kestrel/templates/_helpers.tpl).
    assert re.search(r'helm package charts/kestrel --version "\$VERSION" --app-version "\$VERSION"', script)
    assert 'helm push "kestrel-${VERSION}.tgz" "oci://${CHART_REPOSITORY}"' in script
    assert "--password-stdin" in script


def test_every_action_is_pinned_by_commit_sha_and_names_its_release() -> None:
    text = WORKFLOW.read_text()
    pins: dict[str, set[str]] = {}
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" not in step:
                continue
            action, _, ref = step["uses"].partition("@")
            if action in UNPINNED_ALLOWED:
                continue
            assert SHA.fullmatch(ref), f"{step['uses']} is not pinned by a full commit SHA"
            assert re.search(rf"uses: {re.escape(step['uses'])} # v\d+\.\d+\.\d+$", text, flags=re.MULTILINE), (
                f"{step['uses']} has no `# vX.Y.Z` comment"
            )
            pins.setdefault(action, set()).add(ref)
    assert pins, "no actions found"
    assert all(len(refs) == 1 for refs in pins.values()), f"one action pinned to several commits: {pins}"


def test_arm64_for_every_image_but_the_gpu_builder() -> None:
    images = _workflow()["jobs"]["images"]
    for entry in images["strategy"]["matrix"]["include"]:
        platforms = set(entry["platforms"].split(","))
        if entry["suffix"] == "-gpu":
            # CUDA torch and TensorRT wheels are x86-64 only.
            assert platforms == {"linux/amd64"}, entry
        else:
            assert platforms == {"linux/amd64", "linux/arm64"}, entry
    build = _step(images, "docker/build-push-action")
    assert build["with"]["platforms"] == "${{ matrix.platforms }}"
    order = [s.get("uses", "").split("@")[0] for s in images["steps"]]
    assert order.index("docker/setup-qemu-action") < order.index("docker/build-push-action")
    assert order.index("docker/setup-buildx-action") < order.index("docker/build-push-action")


def test_images_are_built_on_a_base_pinned_by_digest() -> None:
    images = _workflow()["jobs"]["images"]
    resolve = next(s for s in images["steps"] if s.get("id") == "base")
    assert "docker buildx imagetools inspect" in resolve["run"]
    assert 'echo "ref=${base}@${digest}"' in resolve["run"]
    build = _step(images, "docker/build-push-action")
    assert build["with"]["build-args"] == "BASE=${{ steps.base.outputs.ref }}"


def test_images_carry_sbom_and_provenance_and_everything_is_signed_by_digest() -> None:
    jobs = _workflow()["jobs"]
    build = _step(jobs["images"], "docker/build-push-action")
    assert build["with"]["push"] is True
    assert build["with"]["sbom"] is True
    assert build["with"]["provenance"] == "mode=max"
    # What each job signs: the repository it pushed to, at the digest that push reported.
    subjects = {
        "images": (
            '"${IMAGE}@${DIGEST}"',
            {"IMAGE": "${{ env.REGISTRY }}/${{ matrix.image }}", "DIGEST": "${{ steps.build.outputs.digest }}"},
        ),
        "chart": ('"${CHART_REPOSITORY}/kestrel@${DIGEST}"', {"DIGEST": "${{ steps.push.outputs.digest }}"}),
    }
    for name, (subject, env) in subjects.items():
        job = jobs[name]
        assert job["permissions"]["id-token"] == "write", f"{name}: keyless signing needs the OIDC token"
        (sign,) = [i for i, s in enumerate(job["steps"]) if "cosign sign" in s.get("run", "")]
        installer = job["steps"].index(_step(job, "sigstore/cosign-installer"))
        assert installer < sign, name
        assert job["steps"][sign]["run"].strip() == f"cosign sign --yes {subject}", name
        assert job["steps"][sign]["env"] == env, name


def test_least_privilege_and_no_expressions_in_scripts() -> None:
    workflow = _workflow()
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", {})
        assert set(granted) <= {"contents", "packages", "id-token"}, name
        assert granted.get("contents", "read") == "read", name
        for step in job["steps"]:
            # Values reach scripts through env, never interpolated into the script text.
            assert "${{" not in step.get("run", ""), f"{name}: {step.get('name', step['run'][:40])}"
    triggers = workflow["on"] if "on" in workflow else workflow[True]
    assert triggers["push"] == {"tags": ["v*"]}
    assert "workflow_dispatch" in triggers
