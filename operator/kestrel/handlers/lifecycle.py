"""The operator's start and stop, each one Kopf handler with its steps in order (Kopf runs several startup handlers
in an order no code here states).

Start: the configuration `kestrel run` read from the environment arrives as Kopf's memo; Kopf's settings and the
API client from it (state.startup), which the next two use; then the threads of the owned objects' passes
(owned.py); then the drift check (modeldeployment.py), which may request passes at once. Stop: the reverse.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kestrel import settings as operator_settings
from kestrel.handlers import modeldeployment, owned, state


@kopf.on.startup()
def startup(
    *, settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], memo: object, **_: Any
) -> None:
    if not isinstance(memo, operator_settings.Configuration):
        raise kopf.PermanentError(
            "The operator's configuration was not handed to Kopf: start the operator with `kestrel run`"
        )
    state.startup(settings=settings, logger=logger, configuration=memo)
    owned.start_owned_passes(memo)
    modeldeployment.start_drift_check(memo)


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    modeldeployment.stop_drift_check()
    owned.stop_owned_passes()
