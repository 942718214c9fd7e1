"""Process-wide state of the operator: its configuration and API client, set up once at start-up."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from kestrel import settings as operator_settings
from kestrel.kube import client, recent

ANNOTATION_PREFIX = "kestrel.dev"
CONSISTENCY_TIMEOUT_S = 60.0
MANAGED_BY = "app.kubernetes.io/managed-by"
_state: dict[str, Any] = {}


def configure(kube: client.Kube, configuration: operator_settings.Configuration) -> None:
    _state["kube"], _state["config"] = kube, configuration


def kube() -> client.Kube:
    found: client.Kube = _state["kube"]
    return found


def config_() -> operator_settings.Configuration:
    found: operator_settings.Configuration = _state["config"]
    return found


def startup(
    *,
    settings: kopf.OperatorSettings,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    configuration: operator_settings.Configuration,
) -> None:
    """Kopf's settings and the API client from the operator's configuration, which later steps and every handler
    read from here: first of lifecycle.startup's steps."""
    # Kopf's bookkeeping goes into annotations: the CRD's structural schema would prune it from status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # Kestrel posts its own Events with condition reasons; Kopf's per-handler Events would only repeat them.
    settings.posting.level = logging.WARNING
    # After a handler, Kopf waits for the watch to deliver its own annotation patch before it handles the object
    # again; past this timeout it goes on with the older body and runs the create handler a second time. Its 5 s
    # default was too short for a busy operator: bench/scale.py counted far more create passes than creates.
    settings.persistence.consistency_timeout = CONSISTENCY_TIMEOUT_S
    # Passes block on API calls in Kopf's thread pool; its default (CPUs + 4) would idle the API server at scale.
    settings.execution.max_workers = configuration.workers
    # The API server filters the Deployment watch (the handler's own filter is client-side): Kopf would otherwise
    # parse, and keep a memory entry for, every Deployment in the watched namespaces, not just Kestrel's.
    settings.watching.label_selectors["apps", "deployments"] = f"{MANAGED_BY}=kestrel"
    known = recent.Recent(trust=configuration.trust)
    # Kopf's own watch and patch calls use aiohttp; these threads are the ones that share this pool: Kopf's,
    # the drift check's and the owned objects' passes'.
    pool = configuration.workers + 2 * configuration.side_threads
    configure(client.Kube.connect(os.environ.get("KUBECONFIG"), known=known, pool_size=pool), configuration)
    if configuration.watch_namespaces:
        # Named namespaces only: no cluster-wide scan of namespaces and CRDs, which a namespaced install (Roles,
        # no ClusterRole) may not list; Kopf would otherwise retry that scan before serving anything.
        settings.scanning.disabled = True
    logger.info("Started Kestrel with engine store %s", configuration.settings.engine_store)
