"""S3 credentials: a mounted Secret wins over the environment, and no form of them shows the secrets."""

from __future__ import annotations

import pathlib

import pytest

from kestrel import storage
from kestrel.storage import errors, layout, s3

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_a_mounted_secret_wins_over_the_environment(tmp_path: pathlib.Path) -> None:
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("from-secret\n")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text(SECRET)
    environ = {
        "AWS_ACCESS_KEY_ID": "from-env",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_ENDPOINT_URL": "https://ignored.example",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
    }
    loaded = s3.Credentials.load(tmp_path, environ)
    assert (loaded.access_key, loaded.secret_key) == ("from-secret", SECRET)
    assert (loaded.endpoint, loaded.region) == ("http://127.0.0.1:9000", "eu-west-1")
    assert SECRET not in repr(loaded) and "from-secret" not in repr(loaded)


def test_defaults_point_at_aws() -> None:
    loaded = s3.Credentials.load(None, {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": SECRET})
    assert (loaded.endpoint, loaded.region) == ("https://s3.amazonaws.com", "us-east-1")


def test_missing_credentials_and_bad_endpoints_are_refused_without_echoing_secrets(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.StoreConfigError, match="AWS_ACCESS_KEY_ID"):
        s3.Credentials.load(tmp_path, {"AWS_SECRET_ACCESS_KEY": SECRET})
    location = layout.parse_store_uri("s3://engines/p")
    for endpoint in ("ftp://host", "https://host/with/path", "localhost:9000"):
        credentials = s3.Credentials("a", SECRET, endpoint, "us-east-1")
        with pytest.raises(errors.StoreConfigError) as refused:
            s3.S3Store(location, credentials)
        assert SECRET not in str(refused.value)


def test_open_store_picks_the_implementation_by_scheme(tmp_path: pathlib.Path) -> None:
    environ = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    assert isinstance(storage.open_store("s3://engines/p", environ=environ), s3.S3Store)
    assert storage.open_store("pvc://claim/p", pvc_root=tmp_path).location.uri == "pvc://claim/p"
    with pytest.raises(errors.StoreConfigError):
        storage.open_store("gs://bucket/p", environ=environ)
