"""The operator's start and stop, each one Kopf handler with its steps in order (Kopf runs several startup handlers
in an order no code here states).

Start: Kopf's settings, the API client and the configuration (state.startup), which the next two use; then the
threads of the owned objects' passes (owned.py); then the drift check (modeldeployment.py), which may request
passes at once. Stop: the reverse.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kestrel.handlers import modeldeployment, owned, state


@kopf.on.startup()
def startup(*, settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
    state.startup(settings=settings, logger=logger)
    owned.start_owned_passes()
    modeldeployment.start_drift_check()


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    modeldeployment.stop_drift_check()
    owned.stop_owned_passes()
