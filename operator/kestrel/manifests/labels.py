"""Labels and selectors: the recommended `app.kubernetes.io/*` set plus Kestrel's own.

Selectors use only labels that never change for the life of a Deployment (its selector is immutable);
the engine key, which changes with every revision, is a label for people and an annotation for machines.
"""

from __future__ import annotations

from typing import Literal

from kestrel.manifests import names

Component = Literal["build", "triton"]
Track = Literal["stable", "canary"]

# Not "kestrel": that is the operator's own pods' name in the chart, and a policy or selector written for
# the operator must not catch model pods.
APP_NAMES: dict[Component, str] = {"build": "kestrel-builder", "triton": "tritonserver"}
MODEL = "kestrel.dev/model"
ENGINE_KEY = "kestrel.dev/engine-key"  # the short key (8 hex digits): label values stop at 63 characters
TRACK = "kestrel.dev/track"

ENGINE_KEY_ANNOTATION = "kestrel.dev/engine-key"  # the full key
TLS_CHECKSUM_ANNOTATION = "kestrel.dev/tls-checksum"
# The id (not the value) of the API key the pods were started with: Triton reads the key once, at start.
API_KEY_ID_ANNOTATION = "kestrel.dev/api-key-id"
SPEC_ANNOTATION = "kestrel.dev/spec"  # the build pod's spec, read through the downward API


def selector(name: str, component: Component) -> dict[str, str]:
    """What selects every pod of one component of one ModelDeployment (both tracks, for Services and PDBs)."""
    return {
        "app.kubernetes.io/name": APP_NAMES[component],
        "app.kubernetes.io/instance": names.label_value(name),
        "app.kubernetes.io/component": component,
    }


def operator_selector(instance: str) -> dict[str, str]:
    """The operator's own pods, as charts/kestrel/templates/_helpers.tpl (kestrel.selectorLabels) labels them."""
    return {
        "app.kubernetes.io/name": "kestrel",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": "operator",
    }


def track_selector(name: str, track: Track) -> dict[str, str]:
    """What one Triton Deployment selects: stable and canary must not claim each other's pods."""
    return {**selector(name, "triton"), TRACK: track}


def common(name: str, component: Component, engine_key: str | None = None) -> dict[str, str]:
    labels = {
        **selector(name, component),
        "app.kubernetes.io/managed-by": "kestrel",
        "app.kubernetes.io/part-of": "kestrel",
        MODEL: names.label_value(name),
    }
    if engine_key is not None:
        labels[ENGINE_KEY] = names.short_key(engine_key)
    return labels
