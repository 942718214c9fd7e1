"""The store's credentials when no key is configured: the AWS credential chain, as the MinIO SDK implements it.

Sources, in order; the first that yields keys wins:

- the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN;
- the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials; profile AWS_PROFILE);
- web identity (IRSA): the token in AWS_WEB_IDENTITY_TOKEN_FILE exchanged for AWS_ROLE_ARN's credentials by
  AssumeRoleWithWebIdentity at AWS_ENDPOINT_URL_STS, else AWS's regional STS. EKS sets these for a pod whose
  ServiceAccount is annotated `eks.amazonaws.com/role-arn`;
- else the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI: ECS task roles,
  EKS Pod Identity), else EC2 instance metadata (unless AWS_EC2_METADATA_DISABLED=true).

Temporary credentials are fetched again, through a new chain, once half their life has passed. The SDK's providers
keep theirs until ten seconds before they expire, and S3 refuses a pre-signed request once the session that signed
it has ended: a grant signed late in a session would be dead at once. A new chain also reads the token file again
(the kubelet rotates it). A failed renewal keeps the current credentials while they last.

No message from here holds a key, a token or an STS URL (the SDK puts the web-identity token in the query string).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import threading
from collections.abc import Callable, Mapping

import urllib3
from minio.credentials import credentials as sdk_credentials
from minio.credentials import providers

from kestrel.storage import errors

# Retried no sooner: a chain that found nothing (instance metadata timing out) must not cost every pass seconds.
RETRY_AFTER = datetime.timedelta(seconds=30)
HOW_TO = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the chart's storeCredentialsSecret), or give the operator a "
    "cloud identity: IRSA (annotate its ServiceAccount with eks.amazonaws.com/role-arn; EKS then sets AWS_ROLE_ARN "
    "and AWS_WEB_IDENTITY_TOKEN_FILE, and AWS_ENDPOINT_URL_STS names another STS), an ECS task role or an EC2 "
    "instance profile"
)
# What a provider raises: the SDK's own ValueErrors, a missing field of a metadata answer, a malformed STS answer
# (ElementTree's ParseError is a SyntaxError), an unreadable file, and the HTTP client's errors.
_FAILURES = (ValueError, KeyError, SyntaxError, OSError, urllib3.exceptions.HTTPError)
_STATUS = re.compile(r"failed with HTTP status code (\d+)")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def expiry(credentials: sdk_credentials.Credentials) -> datetime.datetime | None:
    """When `credentials` expire, in UTC; None for keys that do not (the SDK keeps a naive UTC time)."""
    moment = credentials.expiration
    if moment is None:
        return None
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment.astimezone(datetime.UTC)


@dataclasses.dataclass
class Source:
    """One link of the chain and, once it failed, why (said without the SDK's message, which may hold a token)."""

    name: str
    provider: providers.Provider
    # Configured on purpose (a token file, an ECS variable): its network failure is worth a retry, not a warning
    # that nothing is configured. Instance metadata is only guessed at, and unreachable off EC2.
    explicit: bool = False
    problem: str = "not tried"
    transient: bool = False


def _explain(error: BaseException) -> tuple[str, bool]:
    """(why, worth a retry) for a provider's failure."""
    if isinstance(error, urllib3.exceptions.HTTPError):
        return f"unreachable ({type(error).__name__})", True
    found = _STATUS.search(str(error)) if isinstance(error, ValueError) else None
    if found:
        status = int(found.group(1))
        return f"answered HTTP {status}", status >= 500 or status == 429
    if isinstance(error, ValueError) and "must not be empty" in str(error):
        return "holds no keys", False
    if isinstance(error, ValueError) and "does not exist in profile" in str(error):
        return "holds no keys for the profile (AWS_PROFILE, else default)", False
    if isinstance(error, ValueError) and "error in reading file" in str(error):
        return "its token file could not be read", False
    return f"failed ({type(error).__name__})", False


class _Noted(providers.Provider):
    """A source that notes why it failed: the SDK's chain only says that every source did."""

    def __init__(self, source: Source) -> None:
        self._source = source

    def retrieve(self) -> sdk_credentials.Credentials:
        try:
            return self._source.provider.retrieve()
        except _FAILURES as error:
            self._source.problem, self._source.transient = _explain(error)
            # The chain moves on to the next source on a ValueError only.
            raise ValueError(self._source.name) from None


def sources(environ: Mapping[str, str], http: urllib3.PoolManager) -> list[Source]:
    """The chain for `environ`, newly made: every provider in it fetches afresh.

    The SDK's providers read os.environ themselves; the values they use are passed explicitly too, so that what
    `environ` says is what is tried (the two are the same outside tests).
    """
    found = [
        Source("the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)", providers.EnvAWSProvider()),
        Source(
            "the shared credentials file",
            providers.AWSConfigProvider(
                environ.get("AWS_SHARED_CREDENTIALS_FILE") or None, environ.get("AWS_PROFILE") or None
            ),
        ),
    ]
    token_file = environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    if token_file:
        sts = environ.get("AWS_ENDPOINT_URL_STS") or None
        role = environ.get("AWS_ROLE_ARN") or "no AWS_ROLE_ARN"
        provider = providers.IamAwsProvider(
            custom_endpoint=sts,
            http_client=http,
            token_file=token_file,
            role_arn=environ.get("AWS_ROLE_ARN") or None,
            role_session_name=environ.get("AWS_ROLE_SESSION_NAME") or None,
            region=environ.get("AWS_REGION") or None,
        )
        found.append(Source(f"web identity (role {role}, STS {sts or 'of AWS'})", provider, explicit=True))
    elif environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        container = providers.IamAwsProvider(http_client=http)
        found.append(Source("the container credentials endpoint", container, explicit=True))
    elif environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
        # One short try, as the AWS SDKs make it: off EC2 the address is a black hole.
        imds = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=2), retries=urllib3.Retry(total=0))
        found.append(Source("EC2 instance metadata", providers.IamAwsProvider(http_client=imds)))
    return found


def _failure(tried: list[Source]) -> errors.StorageError:
    said = "; ".join(f"{source.name}: {source.problem}" for source in tried)
    if any(source.explicit and source.transient for source in tried):
        return errors.StoreUnavailableError(f"Could not get the S3 store's credentials ({said})")
    return errors.StoreConfigError(f"No credentials for the S3 store: {HOW_TO}. Tried {said}")


class Renewing(providers.Provider):
    """The chain's credentials, fetched again through a new chain once half their life has passed."""

    def __init__(self, make: Callable[[], list[Source]], *, clock: Callable[[], datetime.datetime] = _now) -> None:
        self._make = make
        self._clock = clock
        self._lock = threading.Lock()
        self._current: sdk_credentials.Credentials | None = None
        self._renew_at: datetime.datetime | None = None
        self._failed: tuple[errors.StorageError, datetime.datetime] | None = None

    def retrieve(self) -> sdk_credentials.Credentials:
        with self._lock:
            now = self._clock()
            current = self._current
            if current is not None and (self._renew_at is None or now < self._renew_at):
                return current
            try:
                return self._fetch(now)
            except errors.StorageError:
                ends = expiry(current) if current is not None else None
                if current is not None and ends is not None and now < ends - RETRY_AFTER:
                    return current
                raise

    def _fetch(self, now: datetime.datetime) -> sdk_credentials.Credentials:
        if self._failed is not None and now < self._failed[1]:
            error = self._failed[0]
            raise type(error)(str(error))
        tried = self._make()
        try:
            fresh = providers.ChainedProvider([_Noted(source) for source in tried]).retrieve()
        except ValueError:
            failure = _failure(tried)
            self._failed = (failure, now + RETRY_AFTER)
            raise failure from None
        ends = expiry(fresh)
        self._current, self._failed = fresh, None
        self._renew_at = now + (ends - now) / 2 if ends is not None else None
        return fresh

    def secrets(self) -> tuple[str, ...]:
        """What no message may show: the keys and token last handed out (none before the first use)."""
        current = self._current
        if current is None:
            return ()
        return tuple(value for value in (current.access_key, current.secret_key, current.session_token) if value)
