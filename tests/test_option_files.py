"""Files named by options, checked before anything is fetched: an encrypted private key in
--cert or --key is a usage error (fetcher cannot ask for its pass phrase; OpenSSL would prompt on
the terminal from every worker, or fail every URL with a misleading error without one).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import FETCHER, clean_env, invoke
from tests.tls_proxy_servers import Certificates, https_server, make_certificates

PASS_PHRASE = b"Qz7Kw-pass"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def mtls_server(certs):
    with https_server(certs.server_context(require_client_cert=True)) as running:
        yield running


def encrypted_key(certs: Certificates, form: serialization.PrivateFormat) -> bytes:
    """The client key, encrypted: PKCS#8 is ``ENCRYPTED PRIVATE KEY``, the traditional OpenSSL
    form is ``RSA/EC PRIVATE KEY`` with ``Proc-Type: 4,ENCRYPTED``."""
    key = serialization.load_pem_private_key(certs.client_key_pem.read_bytes(), password=None)
    encryption = serialization.BestAvailableEncryption(PASS_PHRASE)
    return key.private_bytes(serialization.Encoding.PEM, form, encryption)


FORMS = {"pkcs8": serialization.PrivateFormat.PKCS8,
         "traditional": serialization.PrivateFormat.TraditionalOpenSSL}  # fmt: skip


def write_combined(certs: Certificates, tmp_path: Path, form: str) -> Path:
    combined = tmp_path / f"combined-{form}.pem"
    combined.write_bytes(certs.client_cert_pem.read_bytes() + encrypted_key(certs, FORMS[form]))
    return combined


def assert_refused_as_encrypted(stderr: str, path: Path) -> None:
    assert "Usage:" in stderr, stderr
    assert f"the private key in {path} is encrypted" in stderr, stderr
    assert "openssl pkey" in stderr, stderr
    assert "PEM pass phrase" not in stderr, stderr


@pytest.mark.parametrize("form", sorted(FORMS))
def test_an_encrypted_key_inside_cert_is_a_usage_error(mtls_server, certs, tmp_path, form):
    combined = write_combined(certs, tmp_path, form)
    assert b"ENCRYPTED" in combined.read_bytes()
    result = invoke(["--cacert", str(certs.ca_pem), "--cert", str(combined),
                     mtls_server.url("/never")])  # fmt: skip
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert_refused_as_encrypted(result.stderr, combined)
    assert result.stdout == ""
    assert mtls_server.paths == [] and mtls_server.tls_errors == []


@pytest.mark.parametrize("form", sorted(FORMS))
def test_an_encrypted_key_file_is_a_usage_error(mtls_server, certs, tmp_path, form):
    key = tmp_path / f"key-{form}.pem"
    key.write_bytes(encrypted_key(certs, FORMS[form]))
    result = invoke(["--cacert", str(certs.ca_pem), "--cert", str(certs.client_cert_pem),
                     "--key", str(key), mtls_server.url("/never")])  # fmt: skip
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert_refused_as_encrypted(result.stderr, key)
    assert mtls_server.paths == []


def test_an_encrypted_key_never_prompts_in_a_process_without_a_terminal(
    mtls_server, certs, tmp_path
):
    """Without a controlling terminal OpenSSL wrote its prompt to stderr and read stdin, and
    every URL failed as "protocol: [Errno 22]"."""
    combined = write_combined(certs, tmp_path, "pkcs8")
    done = subprocess.run(
        [*FETCHER, "-m", "5", "--retries", "0", "--cacert", str(certs.ca_pem),
         "--cert", str(combined), mtls_server.url("/a"), mtls_server.url("/b")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        env=clean_env(),
        start_new_session=True,  # no controlling terminal: nothing for OpenSSL to open
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert_refused_as_encrypted(done.stderr.decode(), combined)
    assert done.stdout == b""
    assert mtls_server.paths == [] and mtls_server.tls_errors == []


def test_a_plain_key_inside_cert_still_works(mtls_server, certs):
    result = invoke(["--cacert", str(certs.ca_pem), "--cert", str(certs.client_combined_pem),
                     mtls_server.url("/ok")])  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert mtls_server.paths == ["/ok"]


def test_a_cert_file_too_large_to_be_pem_is_a_usage_error(certs, tmp_path):
    large = tmp_path / "large.pem"
    large.write_bytes(certs.client_combined_pem.read_bytes() + b"\n" * (1 << 20))
    result = invoke(["--cert", str(large), "https://127.0.0.1:9/never"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "larger than 1 MiB" in result.stderr and str(large) in result.stderr


def test_a_cert_that_is_not_a_regular_file_is_a_usage_error(tmp_path):
    """A pipe (--cert <(...)) would be read empty by every connection after the check's."""
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    result = invoke(["--cert", str(fifo), "https://127.0.0.1:9/never"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "not a regular file" in result.stderr and str(fifo) in result.stderr


@pytest.mark.parametrize("option", ["--cert", "--key"])
def test_a_client_file_that_is_not_pem_is_a_usage_error(certs, tmp_path, option):
    """A PKCS#12 or DER file passed the check and every https URL then failed with 'PEM lib'
    or a UnicodeDecodeError (found on review): refused at start, with what to do."""
    der = tmp_path / "client.der"
    key = serialization.load_pem_private_key(certs.client_key_pem.read_bytes(), None)
    der.write_bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    args = ["--cert", str(certs.client_combined_pem)] if option == "--key" else []
    result = invoke([*args, option, str(der), "https://127.0.0.1:9/never"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "not PEM" in result.stderr and str(der) in result.stderr
