"""Store grant documents as a pod reads them: what parses, what is refused, and that no refusal quotes the grant."""

from __future__ import annotations

import datetime
import json
import pathlib

import pytest

from kestrel.storage import errors, grants, layout

REF = layout.EngineRef("vision", "cams", "ab" * 32)
LATER = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
SIGNATURE = "X-Amz-Signature=0123456789abcdef0123456789abcdef"


def _download(**changes: object) -> str:
    document = json.loads(grants.DownloadGrant(REF.path, {"manifest.json": f"http://s/m?{SIGNATURE}"}, LATER).to_json())
    document.update(changes)
    return json.dumps(document)


def test_both_kinds_round_trip() -> None:
    upload = grants.UploadGrant(REF.path, "http://s/b", {"policy": "p", "x-amz-signature": "s"}, "pre/", LATER)
    assert grants.parse(upload.to_json(), "f") == upload
    download = grants.DownloadGrant(REF.path, {"manifest.json": "http://s/m", "files/a": "http://s/a"}, LATER)
    assert grants.parse(download.to_json(), "f") == download


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"kind": "delete"},
        {"engine": "../other/cams/key"},
        {"objects": {"../../etc/passwd": f"http://s/x?{SIGNATURE}"}},
        {"expires": "tomorrow"},
    ],
)
def test_a_tampered_grant_is_refused_without_quoting_it(changes: dict[str, object]) -> None:
    with pytest.raises(errors.StoreConfigError) as refused:
        grants.parse(_download(**changes), "/var/run/secrets/kestrel/store/grant.json")
    assert "grant.json" in str(refused.value)
    assert SIGNATURE not in str(refused.value) and "http://" not in str(refused.value)


def test_a_grant_for_another_engine_or_past_its_time_is_refused_before_any_request(tmp_path: pathlib.Path) -> None:
    grant = grants.parse(_download(), "f")
    assert isinstance(grant, grants.DownloadGrant)
    other = layout.EngineRef("vision", "cams", "cd" * 32)
    with pytest.raises(errors.StoreAccessError, match="not vision/cams/cdcd"):
        grants.download(grant, other, tmp_path / "a")
    with pytest.raises(errors.StoreAccessError, match="expired at 2030-01-01T00:00:00Z"):
        grants.download(grant, REF, tmp_path / "b", now=LATER + datetime.timedelta(seconds=1))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_engine_file_larger_than_a_post_may_carry_is_refused_before_the_upload(tmp_path: pathlib.Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "model.onnx").write_bytes(b"x" * 2048)
    (tmp_path / "manifest.json").write_bytes(b"{}")
    grant = grants.UploadGrant(REF.path, "http://127.0.0.1:1/b", {}, "pre/", LATER, max_size=1024)
    with pytest.raises(errors.StoreConfigError, match=r"files/model\.onnx is 2048 bytes"):
        grants.upload(grant, tmp_path, REF)


def test_repr_shows_no_address_and_no_field() -> None:
    upload = grants.UploadGrant(REF.path, f"http://s/b?{SIGNATURE}", {"x-amz-signature": SIGNATURE}, "pre/", LATER)
    download = grants.DownloadGrant(REF.path, {"manifest.json": f"http://s/m?{SIGNATURE}"}, LATER)
    for grant in (upload, download):
        assert SIGNATURE not in repr(grant) and "http://" not in repr(grant)


def test_a_pod_refuses_a_grant_of_the_other_kind(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "grant.json"
    path.write_text(_download())
    assert isinstance(grants.read(path, grants.DownloadGrant), grants.DownloadGrant)
    with pytest.raises(errors.StoreConfigError, match="is not an upload grant"):
        grants.read(path, grants.UploadGrant)
