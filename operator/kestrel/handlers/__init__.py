"""Kopf registrations only: parse, call one reconcile(), report. Importing this package registers them."""

import kopf

from kestrel.handlers import lifecycle as lifecycle
from kestrel.handlers import modeldeployment as modeldeployment
from kestrel.handlers import owned as owned
from kestrel.handlers import state as state


def registry() -> kopf.OperatorRegistry:
    """The registry the handlers above were added to (Kopf's default one)."""
    return kopf.get_default_registry()
