"""Why a pod does not get on: what the scheduler and the kubelet say of it, as a condition's reason and message; owns no
condition.

A build Job or a rollout that waits on a pod which will never start (an image that cannot be pulled, no node that
fits, a container killed for memory or restarting in a loop) would otherwise read "running" until a deadline an
hour away. The pod's own words are passed on: the reason as the kubelet or scheduler gives it (ImagePullBackOff,
Unschedulable, OOMKilled, CrashLoopBackOff, ...), and its message, cut to a bounded length. These come from the
scheduler and the kubelet, not from the pod's code; a container's termination message, which the code writes, is
never quoted here.

Unschedulable counts only once the scheduler has said it for UNSCHEDULABLE_GRACE: a pod whose claim is still being
bound, or whose node is still joining, is unschedulable for a few seconds on its way to running, and that is not a
problem to report (nor a Warning Event to send).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable
from typing import Any

# Waiting reasons that need someone to act; ContainerCreating and PodInitializing are a start in progress.
STUCK_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
MAX_MESSAGE = 480
UNSCHEDULABLE_GRACE = datetime.timedelta(seconds=20)


@dataclasses.dataclass(frozen=True)
class Problem:
    reason: str  # the scheduler's or kubelet's own word
    message: str


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _statuses(pod: dict[str, Any]) -> Iterable[dict[str, Any]]:
    state = pod.get("status") or {}
    yield from state.get("initContainerStatuses") or []
    yield from state.get("containerStatuses") or []


def _since(condition: dict[str, Any]) -> datetime.datetime | None:
    text = condition.get("lastTransitionTime")
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def of_pod(pod: dict[str, Any], now: datetime.datetime) -> Problem | None:
    """The first thing that keeps `pod` from running, or None while it runs or is still starting normally."""
    name = pod.get("metadata", {}).get("name", "?")
    for condition in (pod.get("status") or {}).get("conditions") or []:
        unschedulable = condition.get("type") == "PodScheduled" and condition.get("status") == "False"
        if unschedulable and condition.get("reason") == "Unschedulable":
            since = _since(condition)
            if since is not None and now - since < UNSCHEDULABLE_GRACE:
                continue  # not yet: see the module's docstring
            said = condition.get("message") or "no node fits"
            return Problem("Unschedulable", _cut(f"pod {name} cannot be scheduled: {said}"))
    for container in _statuses(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in STUCK_WAITING:
            said = waiting.get("message") or ""
            last = _terminated_reason(container.get("lastState") or {})
            if reason == "CrashLoopBackOff" and last == "OOMKilled":
                return _oom(name, container)
            detail = f": {said}" if said else (f" (last exit: {last})" if last else "")
            return Problem(reason, _cut(f"pod {name}, container {container.get('name')}: {reason}{detail}"))
        if _terminated_reason(container.get("state") or {}) == "OOMKilled":
            return _oom(name, container)
    return None


def _terminated_reason(state: dict[str, Any]) -> str | None:
    terminated = state.get("terminated") or {}
    reason = terminated.get("reason")
    return reason if isinstance(reason, str) else None


def _oom(name: str, container: dict[str, Any]) -> Problem:
    return Problem(
        "OOMKilled",
        _cut(
            f"pod {name}, container {container.get('name')} was killed for exceeding its memory limit "
            f"(restarts: {container.get('restartCount', 0)})"
        ),
    )


def first(pods: Iterable[dict[str, Any]], now: datetime.datetime) -> Problem | None:
    """The problem of the newest pod that has one."""
    ordered = sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp", ""), reverse=True)
    for pod in ordered:
        found = of_pod(pod, now)
        if found is not None:
            return found
    return None
