"""`kestrel status NAME`: what the operator reports of one ModelDeployment, on one screen.

The status is read as plain data, not through api.status's models: those forbid unknown fields, and a CLI older
than the operator that wrote the status must still show what it knows.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kestrel.api import errors
from kestrel.commands import cluster, output

LABEL_WIDTH = 11
COLUMNS = ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="show a ModelDeployment's conditions, revisions, engine, canary, build and endpoints",
        description="-o json|yaml prints the object's status as data. Exit codes: 0 shown; 1 not found or the API "
        "server refused.",
    )
    cluster.add_options(parser)
    output.add_option(parser)
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    try:
        body = cluster.read_model(cluster.connect(args), args.name)
    except errors.KestrelError as error:
        print(f"kestrel status: {error}", file=sys.stderr)
        return 1
    if args.output == "text":
        sys.stdout.write(render(body, datetime.datetime.now(datetime.UTC)))
    else:
        sys.stdout.write(output.dump(body.get("status") or {}, args.output))
    return 0


def render(body: Mapping[str, Any], now: datetime.datetime) -> str:
    """The human layout: a headline, one line per part of the status that is set, then the conditions."""
    meta, found = body.get("metadata") or {}, body.get("status") or {}
    lines = [_headline(meta, found)]
    if found:
        lines += [f"{label:<{LABEL_WIDTH}}{text}".rstrip() for label, text in _parts(body.get("spec") or {}, found)]
        lines += ["", *_conditions(found.get("conditions") or [], now)]
    return "\n".join(lines) + "\n"


def _headline(meta: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    where = f"ModelDeployment {meta.get('namespace')}/{meta.get('name')}"
    if not found:
        return f"{where}: no status yet (the operator has not seen it)"
    generation, observed = meta.get("generation"), found.get("observedGeneration")
    lag = "" if observed == generation else f" (spec generation {generation}, the operator acted on {observed})"
    return f"{where}: {found.get('phase') or 'Unknown'}{lag}"


def _short(key: Any) -> str:
    return str(key)[:8] if key else "-"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _joined(*parts: str | None) -> str:
    return ", ".join(part for part in parts if part)


def _parts(spec: Mapping[str, Any], found: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    endpoints = found.get("endpoints") or {}
    if endpoints:
        yield "Endpoint", _joined(*(f"{k} {endpoints[k]}" for k in ("grpc", "http", "metrics") if endpoints.get(k)))
    if found.get("replicas") is not None or found.get("readyReplicas") is not None:
        yield "Replicas", f"{found.get('readyReplicas') or 0}/{found.get('replicas') or 0} ready"
    engine = found.get("engine") or {}
    if engine:
        yield "Engine", _engine(engine)
        if engine.get("uri"):
            yield "", str(engine["uri"])
    validation = found.get("validation") or {}
    if validation:
        yield "Validation", _validation(validation)
    revision = found.get("revision") or {}
    yield (
        "Revisions",
        _joined(*(f"{k} {_short(revision[k])}" for k in ("current", "previous", "failed") if revision.get(k)))
        or "none serves yet",
    )
    canary = found.get("canary") or {}
    if canary:
        steps = ((spec.get("rollout") or {}).get("canary") or {}).get("steps") or []
        yield "Canary", _canary(canary, steps)
    build = found.get("build") or {}
    if build:
        done, total = build.get("done"), build.get("total")
        count = f" {done}/{total} {build.get('unit') or ''}".rstrip() if done is not None and total else ""
        yield "Build", f"job {build.get('job')}: {build.get('stage')}{count}"
    smoke = (found.get("serving") or {}).get("smoke") or {}
    if smoke.get("passed") is not None:
        latency = f" in {smoke['latencyMs']:.1f} ms" if smoke.get("latencyMs") is not None else ""
        verdict = "passed" if smoke["passed"] else f"failed: {smoke.get('message', '')}"
        if smoke["passed"]:
            parity = smoke.get("parity")
            verdict += f", {smoke.get('probes')} probe images as built" if parity else ", parity not checked"
        yield "Live check", f"engine {_short(smoke.get('revision'))} {verdict}{latency}"


def _engine(engine: Mapping[str, Any]) -> str:
    return _joined(
        " ".join(str(engine[k]) for k in ("format", "precision") if engine.get(k)) or None,
        f"key {_short(engine.get('key'))}",
        _size(engine["sizeBytes"]) if engine.get("sizeBytes") is not None else None,
        f"built on {engine['gpuProduct']}" if engine.get("gpuProduct") else None,
        f"loads in {engine['loadSeconds']:.1f} s" if engine.get("loadSeconds") is not None else None,
    )


def _validation(validation: Mapping[str, Any]) -> str:
    def pair(name: str, source: str, built: str, unit: str = "") -> str | None:
        if validation.get(source) is None or validation.get(built) is None:
            return None
        return f"{name} {validation[source]:.3f} -> {validation[built]:.3f}{unit}"

    verdict = {True: "passed", False: "failed", None: None}[validation.get("passed")]
    return _joined(
        verdict,
        pair("mAP50-95", "mapSource", "mapEngine"),
        f"p50 {validation['p50Ms']:.1f} ms" if validation.get("p50Ms") is not None else None,
        f"p95 {validation['p95Ms']:.1f} ms" if validation.get("p95Ms") is not None else None,
    )


def _canary(canary: Mapping[str, Any], steps: Sequence[int]) -> str:
    step = int(canary.get("step", 0))
    of = f"/{len(steps)}" if steps else ""
    where = f"step {step + 1}{of}, {canary.get('weight')}%"
    replicas = f"{canary['replicas']} replicas" if canary.get("replicas") else None
    window = f"window since {canary['stepStartedAt']}" if canary.get("stepStartedAt") else None
    text = _joined(f"engine {_short(canary.get('revision'))} {canary.get('state')} at {where}", replicas, window)
    analysis = canary.get("analysis") or {}
    if analysis.get("requests") is not None:
        p95 = f", p95 {analysis['p95Ms']:.1f} ms" if analysis.get("p95Ms") is not None else ""
        verdict = {True: ": passed", False: ": failed", None: ""}[analysis.get("passed")]
        text += f"; last window {analysis['requests']} requests, {analysis.get('failures', 0)} failed{p95}{verdict}"
    return text


def age(since: str | None, now: datetime.datetime) -> str:
    """kubectl's short ages: 45s, 12m, 5h, 3d."""
    if not since:
        return "-"
    seconds = int((now - datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds())
    for limit, unit, size in ((120, "s", 1), (120 * 60, "m", 60), (48 * 3600, "h", 3600)):
        if seconds < limit:
            return f"{max(seconds, 0) // size}{unit}"
    return f"{seconds // 86400}d"


def _conditions(found: Sequence[Mapping[str, Any]], now: datetime.datetime) -> list[str]:
    if not found:
        return ["No conditions yet."]
    rows = [COLUMNS] + [
        (
            str(c.get("type", "")),
            str(c.get("status", "")),
            str(c.get("reason", "")),
            age(c.get("lastTransitionTime"), now),
            str(c.get("message", "")),
        )
        for c in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]
