"""Signed GET requests to an S3-compatible store (AWS S3, GCS's S3 API, MinIO), with the standard library only.

The build Job needs exactly one S3 operation, GetObject; AWS Signature Version 4 for it is a few dozen lines, which
keeps boto3 (and its 100 MB of botocore data) out of the builder image. Path-style addressing
(`endpoint/bucket/key`) works on every S3-compatible server, including MinIO on loopback.

Credentials come from a mounted Secret directory (files named like the environment variables) or the environment.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from kestrel.engine import errors

# An unsigned payload hash: GET has no body, and this is what every S3 SDK sends for it.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL")


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How to sign for the source's bucket; `repr` (and so `str` and tracebacks' locals) leaves the secrets out."""

    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    region: str
    endpoint: str
    session_token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def load(cls, secret_dir: Path | None, environ: Mapping[str, str] = os.environ) -> Credentials:
        """Read credentials from `secret_dir` (a mounted Secret) first, then from the environment."""
        values = {key: environ[key] for key in _KEYS if environ.get(key)}
        if environ.get("AWS_ENDPOINT_URL_S3"):
            values["AWS_ENDPOINT_URL"] = environ["AWS_ENDPOINT_URL_S3"]
        if secret_dir is not None:
            for key in _KEYS:
                if (secret_dir / key).is_file():
                    values[key] = (secret_dir / key).read_text().strip()
        if "AWS_ACCESS_KEY_ID" not in values or "AWS_SECRET_ACCESS_KEY" not in values:
            raise errors.FetchError(
                "spec.model.source.credentialsSecret: no S3 credentials found; the Secret (or the environment) "
                "needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        region = values.get("AWS_REGION", "us-east-1")
        return cls(
            access_key=values["AWS_ACCESS_KEY_ID"],
            secret_key=values["AWS_SECRET_ACCESS_KEY"],
            region=region,
            endpoint=values.get("AWS_ENDPOINT_URL", f"https://s3.{region}.amazonaws.com").rstrip("/"),
            session_token=values.get("AWS_SESSION_TOKEN"),
        )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    credentials: Credentials,
    *,
    now: datetime.datetime,
    payload_sha256: str = EMPTY_SHA256,
) -> dict[str, str]:
    """Return `headers` plus the SigV4 `Authorization`, `x-amz-date` and `x-amz-content-sha256` headers."""
    parts = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now:%Y%m%d}/{credentials.region}/s3/aws4_request"
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed |= {"host": parts.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256}
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    names = sorted(signed)
    query = sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    canonical = "\n".join(
        [
            method,
            # Each path segment URI-encoded exactly once: decode first, in case the URL already is.
            urllib.parse.quote(urllib.parse.unquote(parts.path or "/"), safe="/~"),
            "&".join(f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}" for k, v in query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), f"{now:%Y%m%d}")
    for part in (credentials.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    signed.pop("host")  # urllib sets Host itself; it was only needed for the signature
    return signed


def object_request(uri: str, credentials: Credentials, now: datetime.datetime | None = None) -> urllib.request.Request:
    """A signed GetObject request for `s3://bucket/key`."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.netloc or not parts.path.strip("/"):
        raise errors.FetchError(f"spec.model.source.uri: {uri!r} is not s3://bucket/key")
    key = urllib.parse.unquote(parts.path.lstrip("/"))  # s3:// URIs are URLs: a space in a key is %20
    url = f"{credentials.endpoint}/{parts.netloc}/{urllib.parse.quote(key, safe='/~')}"
    headers = sign("GET", url, {}, credentials, now=now or datetime.datetime.now(datetime.UTC))
    return urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - scheme is the configured endpoint
