"""Without keys, the store is signed for with the process's own identity: IRSA's web identity exchanged at STS.

A fake STS on loopback (tests/unit/sts_support.py) answers AssumeRoleWithWebIdentity, reached through the variables
EKS sets (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN) and the SDKs' endpoint override (AWS_ENDPOINT_URL_STS). That the
temporary credentials work against a real server is tests/engine/test_engine_store_with_temporary_credentials.py.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import urllib.parse
from collections.abc import Iterator

import pytest

from kestrel import storage
from kestrel.storage import connection, errors, grants, identity, layout, s3
from tests.unit import sts_support
from tests.unit.sts_support import Answer

ROLE = "arn:aws:iam::123456789012:role/kestrel-engines"
REF = layout.EngineRef("vision", "cams", "ab" * 32)
LOCATION = layout.parse_store_uri("s3://engines/kestrel")
# Not contacted: signing a grant makes no request.
ENDPOINT = "http://127.0.0.1:9"


def _answer(n: int, lifetime: datetime.timedelta = datetime.timedelta(hours=1)) -> Answer:
    expires = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + lifetime
    return Answer(f"ASIATEMP{n}EXAMPLE", f"temp-secret-{n}-wJalrXUtnFEMI", f"session-token-{n}-FwoGZXIvYXdz", expires)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    sts_support.clear_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", ENDPOINT)
    return tmp_path


@pytest.fixture
def irsa(clean_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sts_support.FakeSts]:
    token = clean_environment / "token"
    token.write_text("projected-token-1")
    with sts_support.fake_sts([_answer(1)]) as sts:
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
        monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        yield sts


def _chain(clock: list[datetime.datetime]) -> identity.Renewing:
    http = connection.pool(None, connect=2, read=5, retries=0)
    return identity.Renewing(lambda: identity.sources(os.environ, http), clock=lambda: clock[0])


def test_without_keys_the_store_signs_with_the_roles_credentials_from_sts(irsa: sts_support.FakeSts) -> None:
    found = s3.load(None, os.environ)
    assert isinstance(found, s3.Ambient)
    assert irsa.seen == []  # nothing is fetched before the store is used
    credentials = found.chain.retrieve()
    answer = irsa.answers[0]
    assert (credentials.access_key, credentials.secret_key, credentials.session_token) == (
        answer.access_key,
        answer.secret_key,
        answer.session_token,
    )
    assert identity.expiry(credentials) == answer.expires
    [request] = irsa.seen
    assert request["Action"] == "AssumeRoleWithWebIdentity"
    assert (request["WebIdentityToken"], request["RoleArn"]) == ("projected-token-1", ROLE)
    assert answer.secret_key not in repr(found) and answer.session_token not in repr(found)


def test_credentials_are_renewed_at_half_life_and_the_rotated_token_file_is_read_again(
    irsa: sts_support.FakeSts, clean_environment: pathlib.Path
) -> None:
    irsa.answers.append(_answer(2))
    start = datetime.datetime.now(datetime.UTC)
    clock = [start]
    chain = _chain(clock)
    assert chain.retrieve().access_key == "ASIATEMP1EXAMPLE"
    clock[0] = start + datetime.timedelta(minutes=29)
    assert chain.retrieve().access_key == "ASIATEMP1EXAMPLE"
    assert len(irsa.seen) == 1

    (clean_environment / "token").write_text("projected-token-2")  # the kubelet rotated it
    clock[0] = start + datetime.timedelta(minutes=31)
    renewed = chain.retrieve()
    assert (renewed.access_key, renewed.session_token) == ("ASIATEMP2EXAMPLE", "session-token-2-FwoGZXIvYXdz")
    assert [request["WebIdentityToken"] for request in irsa.seen] == ["projected-token-1", "projected-token-2"]
    assert chain.secrets() == ("ASIATEMP2EXAMPLE", "temp-secret-2-wJalrXUtnFEMI", "session-token-2-FwoGZXIvYXdz")


def test_a_failed_renewal_keeps_the_credentials_while_they_last(irsa: sts_support.FakeSts) -> None:
    start = datetime.datetime.now(datetime.UTC)
    clock = [start]
    chain = _chain(clock)
    chain.retrieve()
    irsa.refuse = 503
    clock[0] = start + datetime.timedelta(minutes=40)
    assert chain.retrieve().access_key == "ASIATEMP1EXAMPLE"
    clock[0] = start + datetime.timedelta(minutes=60)
    with pytest.raises(errors.StoreUnavailableError, match="answered HTTP 503"):
        chain.retrieve()


def test_grants_signed_with_temporary_credentials_carry_the_token_and_end_with_the_session(
    irsa: sts_support.FakeSts,
) -> None:
    engines = storage.open_store(LOCATION.uri)
    assert isinstance(engines, s3.S3Store)
    answer = irsa.answers[0]

    download = engines.download_grant(REF, grants.DOWNLOAD_LIFETIME, ["manifest.json"])
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(download.objects["manifest.json"]).query))
    assert query["X-Amz-Security-Token"] == answer.session_token
    assert query["X-Amz-Credential"].startswith(f"{answer.access_key}/")
    # S3 refuses the URL once the session has ended, whatever its signature says; the grant says so too.
    assert download.expires == answer.expires
    assert 3500 <= int(query["X-Amz-Expires"]) <= 3600

    upload = engines.upload_grant(REF, datetime.timedelta(hours=4))
    assert upload.fields["x-amz-security-token"] == answer.session_token
    assert upload.expires == answer.expires
    assert len(irsa.seen) == 1  # one session signs both


def test_credentials_about_to_end_sign_no_grant(
    clean_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = clean_environment / "token"
    token.write_text("projected-token")
    with sts_support.fake_sts([_answer(1, datetime.timedelta(seconds=60))]) as sts:
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        engines = s3.S3Store(LOCATION, s3.Ambient.load(os.environ))
        with pytest.raises(errors.StoreUnavailableError, match="too soon"):
            engines.download_grant(REF, grants.DOWNLOAD_LIFETIME, ["manifest.json"])


def test_an_sts_refusal_is_named_without_the_token(irsa: sts_support.FakeSts) -> None:
    irsa.refuse = 403
    engines = storage.open_store(LOCATION.uri)
    with pytest.raises(errors.StoreConfigError) as refused:
        engines.exists(REF)
    message = str(refused.value)
    assert f"web identity (role {ROLE}, STS {irsa.url}): answered HTTP 403" in message
    assert "projected-token-1" not in message and "WebIdentityToken" not in message


def test_an_unreachable_sts_is_worth_a_retry(clean_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = clean_environment / "token"
    token.write_text("projected-token")
    with sts_support.fake_sts([]) as sts:
        closed = sts.url  # nothing listens here once the fake is gone
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", closed)
    with pytest.raises(errors.StoreUnavailableError, match="unreachable"):
        s3.S3Store(LOCATION, s3.Ambient.load(os.environ)).exists(REF)


def test_no_credentials_anywhere_is_said_at_first_use_with_what_to_set(clean_environment: pathlib.Path) -> None:
    engines = storage.open_store(LOCATION.uri)  # opening asks nothing yet
    with pytest.raises(errors.StoreConfigError) as missing:
        engines.exists(REF)
    message = str(missing.value)
    for needed in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "storeCredentialsSecret", "IRSA"):
        assert needed in message
    assert "eks.amazonaws.com/role-arn" in message and "AWS_WEB_IDENTITY_TOKEN_FILE" in message
    assert "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): holds no keys" in message
    assert "the shared credentials file: holds no keys for the profile" in message
    assert "instance metadata" not in message  # AWS_EC2_METADATA_DISABLED=true
    # Said again at once, not after another round of the chain.
    with pytest.raises(errors.StoreConfigError, match="IRSA"):
        engines.exists(REF)


def test_one_key_without_the_other_is_refused_rather_than_ignored(clean_environment: pathlib.Path) -> None:
    (clean_environment / "AWS_ACCESS_KEY_ID").write_text("AKIDEXAMPLE")
    with pytest.raises(errors.StoreConfigError, match="AWS_SECRET_ACCESS_KEY"):
        s3.load(clean_environment, os.environ)


def test_keys_in_the_environment_go_through_the_chain_with_their_session_token(
    clean_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAENVEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-wJalrXUtnFEMI")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-session-token")
    credentials = _chain([datetime.datetime.now(datetime.UTC)]).retrieve()
    assert (credentials.access_key, credentials.session_token) == ("ASIAENVEXAMPLE", "env-session-token")


def test_the_container_credentials_endpoint_of_eks_pod_identity_is_asked_with_its_token(
    clean_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_environment / "pod-identity-token").write_text("pod-identity-token")
    with sts_support.fake_sts([_answer(3)]) as endpoint:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{endpoint.url}/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(clean_environment / "pod-identity-token"))
        credentials = s3.Ambient.load(os.environ).chain.retrieve()
    assert (credentials.access_key, credentials.session_token) == ("ASIATEMP3EXAMPLE", "session-token-3-FwoGZXIvYXdz")
    assert endpoint.seen == [{"path": "/v1/credentials", "Authorization": "pod-identity-token"}]
