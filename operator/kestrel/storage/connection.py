"""What signs for the S3 store: keys (a mounted Secret, the environment) or, without them, the process's own identity.

`Credentials` are static keys, as the chart's storeCredentialsSecret gives them to the operator. `Ambient` is where
the store is with no key configured: requests are signed with what `identity`'s credential chain finds (IRSA's web
identity, an ECS or EC2 role), fetched at the first request and renewed as they near their end. `load` picks one.
`repr` shows no key or token of either.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping

import certifi
import urllib3
from minio.credentials import providers

from kestrel.storage import errors, identity

_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL")


def _values(secret_dir: pathlib.Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The AWS variables of the environment, overridden by the files of `secret_dir` (AWS_ENDPOINT_URL_S3 wins
    over AWS_ENDPOINT_URL, as in the SDKs)."""
    values = {key: environ[key] for key in _KEYS if environ.get(key)}
    if environ.get("AWS_ENDPOINT_URL_S3"):
        values["AWS_ENDPOINT_URL"] = environ["AWS_ENDPOINT_URL_S3"]
    if secret_dir is not None:
        for key in _KEYS:
            if (secret_dir / key).is_file():
                values[key] = (secret_dir / key).read_text().strip()
    return values


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Where the store is and how to sign for it; `repr` leaves the secrets out."""

    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    endpoint: str
    region: str
    session_token: str | None = dataclasses.field(default=None, repr=False)
    ca_file: str | None = None

    @classmethod
    def load(cls, secret_dir: pathlib.Path | None = None, environ: Mapping[str, str] = os.environ) -> Credentials:
        """Read the mounted Secret `secret_dir`, else the environment; both keys must be there."""
        values = _values(secret_dir, environ)
        if not values.get("AWS_ACCESS_KEY_ID") or not values.get("AWS_SECRET_ACCESS_KEY"):
            where = f"{secret_dir} or the environment" if secret_dir else "the environment"
            raise errors.StoreConfigError(
                f"No S3 credentials: {where} needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        region = values.get("AWS_REGION", "us-east-1")
        return cls(
            access_key=values["AWS_ACCESS_KEY_ID"],
            secret_key=values["AWS_SECRET_ACCESS_KEY"],
            endpoint=values.get("AWS_ENDPOINT_URL", "https://s3.amazonaws.com"),
            region=region,
            session_token=values.get("AWS_SESSION_TOKEN"),
            ca_file=environ.get("AWS_CA_BUNDLE") or None,
        )

    def secrets(self) -> tuple[str, ...]:
        return tuple(value for value in (self.access_key, self.secret_key, self.session_token) if value)

    def provider(self) -> providers.Provider:
        return providers.StaticProvider(self.access_key, self.secret_key, self.session_token)


@dataclasses.dataclass(frozen=True)
class Ambient:
    """Where the store is, with no key configured: requests are signed with what `identity`'s chain finds."""

    endpoint: str
    region: str
    chain: identity.Renewing = dataclasses.field(repr=False, compare=False)
    ca_file: str | None = None

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> Ambient:
        """The endpoint and region of the environment; nothing is fetched until the store is first used."""
        values = _values(None, environ)
        ca_file = environ.get("AWS_CA_BUNDLE") or None
        # STS shares the store's CA bundle: an on-prem STS (MinIO's) is usually served by the store itself.
        http = pool(ca_file, connect=5, read=30, retries=2)
        return cls(
            endpoint=values.get("AWS_ENDPOINT_URL", "https://s3.amazonaws.com"),
            region=values.get("AWS_REGION", "us-east-1"),
            chain=identity.Renewing(lambda: identity.sources(environ, http)),
            ca_file=ca_file,
        )

    def secrets(self) -> tuple[str, ...]:
        return self.chain.secrets()

    def provider(self) -> providers.Provider:
        return self.chain


def load(secret_dir: pathlib.Path | None = None, environ: Mapping[str, str] = os.environ) -> Credentials | Ambient:
    """The keys of the mounted Secret `secret_dir` or of the environment; where neither names a key, the ambient
    chain. One key without the other is refused here rather than ignored."""
    values = _values(secret_dir, environ)
    if not values.get("AWS_ACCESS_KEY_ID") and not values.get("AWS_SECRET_ACCESS_KEY"):
        return Ambient.load(environ)
    return Credentials.load(secret_dir, environ)


def pool(ca_file: str | None, *, connect: float, read: float, retries: int) -> urllib3.PoolManager:
    """An HTTP client whose requests end: a stuck server fails the request instead of hanging a reconcile or an
    init container. urllib3 retries connection errors and 5xx with back-off."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect, read=read),
        retries=urllib3.Retry(total=retries, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)),
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
