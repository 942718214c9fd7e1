"""Fetching the source checkpoint: every local and HTTPS path streams to disk and refuses a wrong sha256."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kestrel.api import errors as api_errors
from kestrel.engine import errors, fetch
from kestrel.storage import s3

PAYLOAD = bytes(range(256)) * 9000  # a little over 2 MiB: more than one streaming chunk
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.pt"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def test_file_uri_is_copied_and_verified(source: Path, tmp_path: Path) -> None:
    fetched = fetch.fetch(f"file://{source}", tmp_path / "out" / "model.pt", DIGEST)
    assert fetched.path.read_bytes() == PAYLOAD
    assert (fetched.sha256, fetched.size) == (DIGEST, len(PAYLOAD))


def test_wrong_sha256_is_refused_and_leaves_no_file(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.pt"
    with pytest.raises(errors.ChecksumMismatchError, match=r"spec\.model\.source\.sha256") as caught:
        fetch.fetch(f"file://{source}", target, "0" * 64)
    assert isinstance(caught.value, api_errors.IntegrityError)
    assert caught.value.actual == DIGEST
    assert list(target.parent.iterdir()) == []


def test_without_expected_hash_the_digest_is_still_reported(source: Path, tmp_path: Path) -> None:
    assert fetch.fetch(f"file://{source}", tmp_path / "m.pt", None).sha256 == DIGEST


def test_pvc_uri_reads_below_the_claim_mount(source: Path, tmp_path: Path) -> None:
    options = fetch.FetchOptions(pvc_root=tmp_path)
    fetched = fetch.fetch("pvc://src/model.pt", tmp_path / "out.pt", DIGEST, options)
    assert fetched.path.read_bytes() == PAYLOAD


def test_pvc_uri_may_not_escape_its_claim(source: Path, tmp_path: Path) -> None:
    options = fetch.FetchOptions(pvc_root=tmp_path / "src")
    (tmp_path / "src" / "claim").mkdir()
    with pytest.raises(errors.FetchError, match="inside the claim"):
        fetch.fetch("pvc://claim/../model.pt", tmp_path / "out.pt", None, options)


def test_missing_file_names_the_uri_field(tmp_path: Path) -> None:
    with pytest.raises(errors.FetchError, match=r"spec\.model\.source\.uri"):
        fetch.fetch(f"file://{tmp_path}/nope.pt", tmp_path / "out.pt", None)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/models/model.pt":
            self.send_error(404, "no such model")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert_file, key_file = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_file
    finally:
        server.shutdown()
        server.server_close()


def test_https_download_with_a_private_ca(https_server: tuple[str, Path], tmp_path: Path) -> None:
    base, ca = https_server
    options = fetch.FetchOptions(ca_file=ca)
    fetched = fetch.fetch(f"{base}/models/model.pt", tmp_path / "m.pt", DIGEST, options)
    assert fetched.path.read_bytes() == PAYLOAD


def test_https_refuses_an_untrusted_certificate(https_server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = https_server
    with pytest.raises(errors.FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch.fetch(f"{base}/models/model.pt", tmp_path / "m.pt", DIGEST)


def test_https_error_status_is_reported(https_server: tuple[str, Path], tmp_path: Path) -> None:
    base, ca = https_server
    with pytest.raises(errors.FetchError, match="404"):
        fetch.fetch(f"{base}/models/other.pt", tmp_path / "m.pt", DIGEST, fetch.FetchOptions(ca_file=ca))


def test_https_wrong_digest_is_refused(https_server: tuple[str, Path], tmp_path: Path) -> None:
    base, ca = https_server
    with pytest.raises(errors.ChecksumMismatchError):
        fetch.fetch(f"{base}/models/model.pt", tmp_path / "m.pt", "f" * 64, fetch.FetchOptions(ca_file=ca))


def test_s3_credentials_prefer_the_mounted_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("from-secret\n")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("s3cret")
    (tmp_path / "AWS_ENDPOINT_URL").write_text("http://127.0.0.1:9000/")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "from-env",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    credentials = fetch.s3_credentials(fetch.FetchOptions(credentials_dir=tmp_path, ca_file=tmp_path / "ca.pem"))
    assert isinstance(credentials, s3.Credentials)
    assert (credentials.access_key, credentials.region, credentials.endpoint) == (
        "from-secret",
        "eu-west-1",
        "http://127.0.0.1:9000/",
    )
    assert credentials.ca_file == str(tmp_path / "ca.pem")  # the fetch's CA trusts the store's endpoint too


def test_s3_without_keys_in_the_mounted_secret_names_the_secret_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(errors.FetchError, match="credentialsSecret"):
        fetch.s3_credentials(fetch.FetchOptions(credentials_dir=tmp_path))


def test_s3_without_a_secret_or_keys_signs_with_the_pods_own_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    assert isinstance(fetch.s3_credentials(fetch.FetchOptions()), s3.Ambient)


def test_s3_credentials_never_print_their_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    (tmp_path / "AWS_SESSION_TOKEN").write_text("FwoGZXIvYXdzEXAMPLESESSIONTOKEN")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    credentials = fetch.s3_credentials(fetch.FetchOptions(credentials_dir=tmp_path))
    assert isinstance(credentials, s3.Credentials)
    assert credentials.session_token == "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
    # repr is what str, f-strings, logging of the object and pytest's tracebacks show.
    for shown in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert "wJalrXUtnFEMI" not in shown
        assert "FwoGZXIvYXdz" not in shown
        assert "AKIAIOSFODNN7EXAMPLE" not in shown
    assert "us-east-1" in repr(credentials)  # what is not secret still helps a reader
