"""A fake STS on loopback: answers AssumeRoleWithWebIdentity as AWS does (and GETs as a container credentials
endpoint does), and records what it was sent.

Stands in for AWS's STS (and EKS's IRSA behind it), which no test here can reach: enough of the protocol for the
MinIO SDK's web-identity provider, which POSTs the token and role in the query string and parses the XML answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.server
import json
import os
import pathlib
import threading
import urllib.parse
from collections.abc import Iterator

import pytest

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


def clear_aws_environment(monkeypatch: pytest.MonkeyPatch, folder: pathlib.Path) -> None:
    """No key, no shared credentials file, no instance metadata: the credential chain finds only what a test sets."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-credentials-file"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@dataclasses.dataclass
class Answer:
    access_key: str
    secret_key: str
    session_token: str
    expires: datetime.datetime


@dataclasses.dataclass
class FakeSts:
    url: str
    answers: list[Answer]
    # The query of each request, in order.
    seen: list[dict[str, str]] = dataclasses.field(default_factory=list)
    # An HTTP status to refuse with instead of answering.
    refuse: int | None = None

    def answer(self) -> Answer:
        return self.answers[min(len(self.seen), len(self.answers)) - 1]


def _document(answer: Answer) -> bytes:
    return (
        f'<AssumeRoleWithWebIdentityResponse xmlns="{NAMESPACE}"><AssumeRoleWithWebIdentityResult>'
        f"<Credentials><AccessKeyId>{answer.access_key}</AccessKeyId>"
        f"<SecretAccessKey>{answer.secret_key}</SecretAccessKey><SessionToken>{answer.session_token}</SessionToken>"
        f"<Expiration>{answer.expires:%Y-%m-%dT%H:%M:%SZ}</Expiration></Credentials>"
        "<SubjectFromWebIdentityToken>system:serviceaccount:kestrel-system:kestrel-operator"
        "</SubjectFromWebIdentityToken></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    ).encode()


@contextlib.contextmanager
def fake_sts(answers: list[Answer]) -> Iterator[FakeSts]:
    state = FakeSts("", answers)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            query = urllib.parse.urlsplit(self.path).query or body
            state.seen.append(dict(urllib.parse.parse_qsl(query)))
            if state.refuse is not None:
                self.send_response(state.refuse)
                self.end_headers()
                self.wfile.write(b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>")
                return
            document = _document(state.answer())
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def do_GET(self) -> None:  # the container credentials endpoint (ECS, EKS Pod Identity) answers JSON
            state.seen.append({"path": self.path, "Authorization": self.headers.get("Authorization") or ""})
            answer = state.answer()
            document = json.dumps(
                {
                    "AccessKeyId": answer.access_key,
                    "SecretAccessKey": answer.secret_key,
                    "Token": answer.session_token,
                    "Expiration": f"{answer.expires:%Y-%m-%dT%H:%M:%SZ}",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
