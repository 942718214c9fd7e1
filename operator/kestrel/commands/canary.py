"""`kestrel canary promote|abort NAME`: ask the operator to cut a running canary short.

The request is the annotation `actions.CANARY_ACTION`, set with a merge patch; the operator acts on it in its next
pass (promote: the remaining steps are skipped; abort: rolled back, the engine not retried for this spec), removes
it, and says what it did in Events and conditions. The command refuses when the status shows no canary in
progress, which is also what the operator would answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from kestrel.api import actions, errors
from kestrel.commands import cluster

HELP = {
    actions.PROMOTE: "skip the remaining canary steps: the stable Deployment moves to the canary's engine now",
    actions.ABORT: "roll the canary back now, as a failed analysis would; its engine is not retried for this spec",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("canary", help="promote or abort a ModelDeployment's running canary")
    verbs = parser.add_subparsers(title="actions", required=True)
    for action in actions.CANARY_ACTIONS:
        verb = verbs.add_parser(
            action,
            help=HELP[action],
            description=f"{HELP[action]}. Exit codes: 0 asked; 1 no canary in progress, not found or refused.",
        )
        cluster.add_options(verb)
        verb.set_defaults(command=run, action=action)


def refusal(body: Mapping[str, Any]) -> str | None:
    """Why the status says there is no canary to act on; None when one is in progress."""
    found = (body.get("status") or {}).get("canary") or {}
    if found.get("state") == "Progressing":
        return None
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    where = f"ModelDeployment {meta.get('namespace')}/{meta.get('name')}"
    strategy = (spec.get("rollout") or {}).get("strategy") or "rolling"
    if strategy != "canary":
        return f"{where} rolls out with strategy {strategy}: it has no canaries"
    if found:
        last = f"the last, of engine {str(found.get('revision'))[:8]}, is {found.get('state')}"
        return f"no canary is in progress for {where}: {last}"
    return (
        f"no canary is in progress for {where} (where Argo Rollouts runs the canary, use "
        "`kubectl argo rollouts promote|abort` on the model's Rollout)"
    )


def run(args: argparse.Namespace) -> int:
    action: actions.CanaryAction = args.action
    try:
        connection = cluster.connect(args)
        body = cluster.read_model(connection, args.name)
        why = refusal(body)
        if why is None:
            connection.kube.annotate_model_deployment(connection.namespace, args.name, {actions.CANARY_ACTION: action})
    except errors.KestrelError as error:
        print(f"kestrel canary {action}: {error}", file=sys.stderr)
        return 1
    if why is not None:
        print(f"kestrel canary {action}: {why}; nothing was asked", file=sys.stderr)
        return 1
    found = body["status"]["canary"]
    print(
        f"Asked the operator to {action} the canary of engine {str(found.get('revision'))[:8]} "
        f"(step {int(found.get('step', 0)) + 1}, {found.get('weight')}%) of ModelDeployment "
        f"{connection.namespace}/{args.name}; `kestrel status {args.name} -n {connection.namespace}` shows the outcome"
    )
    return 0
