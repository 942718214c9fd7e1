"""Where the operator dials a Service or pod address, and which name the server's certificate must carry.

In a cluster the operator dials `NAME.NAMESPACE.svc:PORT` and pod IPs directly. An operator outside the pod
network (a developer's `kestrel run` beside port-forwards, or the test bed, where Service and pod IPs do not
route) is given an address map: a JSON file `{"cams-triton.vision.svc:8001": "127.0.0.1:40123", ...}`
(setting `KESTREL_ADDRESS_MAP`). A mapped address is dialled at its replacement, and TLS still verifies the
certificate against the original host name, so the map changes the route, never what is trusted.
The file is read at each use: whoever writes it (testbed/service_proxy.py) adds pods as they come.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib


class AddressMapError(ValueError):
    """The address map file cannot be read or is not a JSON object of "host:port" strings."""


@dataclasses.dataclass(frozen=True)
class Route:
    """Dial `address`; the server's certificate must name `server_name`."""

    address: str
    server_name: str


def host(address: str) -> str:
    found, sep, port = address.rpartition(":")
    if not sep or not found or not port.isdigit():
        raise AddressMapError(f"{address!r} is not host:port")
    return found


def load(path: pathlib.Path | None) -> dict[str, str]:
    """The map in `path`; no path: an empty map (the operator is in the pod network)."""
    if path is None:
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise AddressMapError(f"KESTREL_ADDRESS_MAP {path}: {error}") from None
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise AddressMapError(f'KESTREL_ADDRESS_MAP {path}: expected a JSON object {{"host:port": "host:port"}}')
    return found


def route(address: str, mapping: dict[str, str]) -> Route:
    """How to reach `address` (host:port): through the map where it names it, else directly."""
    return Route(address=mapping.get(address, address), server_name=host(address))
