"""A running build's stage in the model's status: the newest progress line of the build pod's own log; owns no
condition.

The build writes `kestrel-progress {...}` lines (engine/progress.py). The pod runs the user's checkpoint, so only
a bounded tail of its log is read, only lines `progress.parse` accepts (named stages, bounded counts) are believed,
and nothing else of the log reaches status, Events or the operator's own log. A log that cannot be read (the
container not started yet, the node unreachable) leaves the stage unknown; it is no failure of the model.
"""

from __future__ import annotations

import logging
from typing import Any

from kestrel.api import errors, status
from kestrel.engine import progress
from kestrel.manifests import build_job
from kestrel.reconcilers import context

logger = logging.getLogger(__name__)
LINES = 20
LIMIT_BYTES = 8192


def read(ctx: context.Context, pod: dict[str, Any]) -> progress.Progress | None:
    """The build's newest believable progress line, or None."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return None
    name = pod["metadata"]["name"]
    try:
        text = ctx.kube.pod_log_tail(ctx.namespace, name, build_job.CONTAINER, lines=LINES, limit_bytes=LIMIT_BYTES)
    except errors.ForbiddenError:
        raise  # the chart's RBAC lacks pods/log: said, not hidden
    except errors.ClusterError as error:
        # Its text is the API server's, not the pod's: a container not started yet, a node out of reach, ...
        logger.info("%s: the build's stage is unknown: %s", ctx.ref, error)
        return None
    return progress.newest(text)


def status_of(job: str, found: progress.Progress | None) -> status.BuildProgressStatus | None:
    if found is None:
        return None
    unit = progress.UNITS[found.stage] if found.done is not None else None
    return status.BuildProgressStatus(job=job, stage=found.stage, done=found.done, total=found.total, unit=unit)
