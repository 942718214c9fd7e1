"""`kestrel run` names itself to Kopf without the password database: its uid may have no entry in the image."""

from __future__ import annotations

import getpass

import pytest

from kestrel import cli


def test_the_identity_comes_from_pod_id_or_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    monkeypatch.setattr(getpass, "getuser", no_entry)
    assert cli.operator_identity({"POD_ID": "kestrel-operator-7d9f-abcde"}) == "kestrel-operator-7d9f-abcde"
    assert cli.operator_identity({}).startswith("kestrel@")
