"""TLS options against a real HTTPS server on 127.0.0.1 with trustme certificates: verification
on by default, --cacert, -k/--insecure, client certificates, and REQUESTS_CA_BUNDLE never
overriding what the command line asked for.
"""

import errno
import json
import os
import ssl
import subprocess
import time

import pytest

from tests.conftest import FETCHER, clean_env, invoke, run_process
from tests.servers import FaultServer, counting_server, read_request, records, silent
from tests.tls_proxy_servers import Certificates, https_server, make_certificates

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(certs):
    with https_server(certs.server_context()) as running:
        yield running


@pytest.fixture
def mtls_server(certs):
    """A server that requires a client certificate issued by our CA."""
    with https_server(certs.server_context(require_client_cert=True)) as running:
        yield running


def fetch(url, *args, **env):
    """Run the command on one URL without retries; return (click result, its one record)."""
    result = invoke(["--format", "jsonl", "--retries", "0", *args, url], **env)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.exit_code, result.stdout, result.stderr)
    return result, json.loads(lines[0])


def assert_ok(result, record, path):
    assert record["ok"] is True, record
    assert record["status"] == 200 and record["error"] is None, record
    assert record["bytes"] == len(f"secure {path}\n"), record
    assert result.exit_code == 0, result.stderr


def assert_tls_failure(result, record):
    assert record["ok"] is False and record["status"] is None, record
    assert record["error"]["kind"] == "tls", record
    assert record["error"]["message"], record
    assert result.exit_code == 3, result.stderr  # every URL failed


# -- verification --------------------------------------------------------------------------------


def test_verification_is_on_by_default(server):
    result, record = fetch(server.url("/default"))

    assert_tls_failure(result, record)
    assert "certificate verify failed" in record["error"]["message"], record
    assert server.paths == []  # the request was never sent over the untrusted connection


def test_cacert_trusts_the_ca(server, certs):
    result, record = fetch(server.url("/trusted"), "--cacert", str(certs.ca_pem))

    assert_ok(result, record, "/trusted")
    assert server.paths == ["/trusted"]


def test_cacert_still_checks_the_host_name(certs):
    """Trusting the CA is not trusting any name: a certificate for another host still fails."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certs.ca.issue_cert("elsewhere.example").configure_cert(context)
    with https_server(context) as server:
        result, record = fetch(server.url("/wrong-name"), "--cacert", str(certs.ca_pem))

    assert_tls_failure(result, record)
    assert "127.0.0.1" in record["error"]["message"], record
    assert server.paths == []


@pytest.mark.parametrize("flag", ["-k", "--insecure"])
def test_insecure_skips_verification(server, flag):
    result, record = fetch(server.url("/insecure"), flag)

    assert_ok(result, record, "/insecure")
    assert "InsecureRequestWarning" not in result.stderr


def test_insecure_prints_no_warning_in_a_real_process(server):
    """In process, pytest turns warnings into errors; a real process shows what a user sees:
    urllib3 would print InsecureRequestWarning on stderr once per run if fetcher let it."""
    url = server.url("/quiet")
    done = run_process(["--format", "jsonl", "--retries", "0", "-k", url, url], timeout=30)

    stderr = done.stderr.decode()
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert done.returncode == 0, stderr
    assert [r["status"] for r in records] == [200, 200]
    assert "InsecureRequestWarning" not in stderr and "Unverified HTTPS" not in stderr, stderr


@pytest.mark.parametrize("flag", ["--cacert", "--cert"])
def test_a_typed_cacert_or_cert_beats_insecure_from_the_environment(server, certs, flag):
    """FETCHER_INSECURE=1 from a profile turned off the verification a typed --cacert asked
    for, without a word (s24 h1 4). The typed option wins, as a typed -s beats
    FETCHER_PROGRESS, and stderr says the variable was not followed. The server's CA is not
    trusted here (another CA's bundle, or the default one beside --cert): verification shows as
    kind tls."""
    given = str(certs.other_ca_pem) if flag == "--cacert" else str(certs.client_combined_pem)
    result, record = fetch(server.url("/typed-wins"), flag, given, FETCHER_INSECURE="1")

    assert_tls_failure(result, record)
    assert "FETCHER_INSECURE" in result.stderr and flag in result.stderr, result.stderr
    assert result.stderr.count("FETCHER_INSECURE") == 1, result.stderr
    assert server.paths == []


def test_the_ignored_insecure_variable_is_not_said_under_quiet(server, certs):
    result, record = fetch(
        server.url("/quiet"), "-q", "--cacert", str(certs.other_ca_pem), FETCHER_INSECURE="1"
    )
    assert_tls_failure(result, record)
    assert "FETCHER_INSECURE" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [(["-k"], {"FETCHER_CACERT": "other"}), (["-k", "--cacert", "other"], {}),
     ([], {"FETCHER_INSECURE": "1", "FETCHER_CACERT": "other"})],
    ids=["typed-k-beats-variable-cacert", "both-typed", "both-variables"],
)  # fmt: skip
def test_insecure_still_wins_when_typed_or_beside_a_cacert_variable(server, certs, args, env):
    """Only a typed --cacert or --cert beats the variable: -k typed, or both in variables, turn
    verification off as curl's -k does beside --cacert."""
    other = str(certs.other_ca_pem)
    args = [other if arg == "other" else arg for arg in args]
    env = {name: other if value == "other" else value for name, value in env.items()}
    result, record = fetch(server.url("/k-wins"), *args, **env)

    assert_ok(result, record, "/k-wins")
    assert "FETCHER_INSECURE" not in result.stderr, result.stderr


# -- client certificates ---------------------------------------------------------------------------


def test_client_certificate_and_key_are_presented(mtls_server, certs):
    result, record = fetch(
        mtls_server.url("/mtls"),
        "--cacert", str(certs.ca_pem),
        "--cert", str(certs.client_cert_pem),
        "--key", str(certs.client_key_pem),
    )  # fmt: skip

    assert_ok(result, record, "/mtls")
    assert mtls_server.paths == ["/mtls"]
    (peer,) = mtls_server.peer_certs
    assert peer["subjectAltName"] == (("email", "client@example"),)


def test_client_certificate_with_its_key_in_one_file(mtls_server, certs):
    cert = str(certs.client_combined_pem)
    result, record = fetch(
        mtls_server.url("/one-file"), "--cacert", str(certs.ca_pem), "--cert", cert
    )

    assert_ok(result, record, "/one-file")
    assert mtls_server.paths == ["/one-file"]


def test_missing_client_certificate_is_tls(certs):
    """With TLS 1.3 the client finishes its handshake before the server checks for a client
    certificate; the server's refusal (an alert, or just the closed connection) arrives on the
    first read. Both show up as an SSLError, so the kind is tls."""
    with https_server(certs.server_context(require_client_cert=True)) as server:
        result, record = fetch(server.url("/no-cert"), "--cacert", str(certs.ca_pem))

    assert_tls_failure(result, record)
    assert server.paths == []
    # The server thread has been joined, so its side of the story is complete.
    assert len(server.tls_errors) == 1, server.tls_errors
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in server.tls_errors[0]


def test_a_missing_client_certificate_is_said_by_the_server_s_alert_without_the_http_hint(certs):
    """s37 t1 2: the request's write failed first, 'EOF occurred in violation of protocol',
    the server's alert unread; for a URL typed without a scheme that read as a peer that
    does not speak TLS, and the record advised http, which sends the request, -u's password
    with it, in clear. The alert is read after the failed write, as curl reads it."""
    with https_server(certs.server_context(require_client_cert=True)) as server:
        url = server.url("/no-cert").removeprefix("https://")
        # In a process of its own: the server's thread then answers at once, as a real one does,
        # and its alert comes before the request's write, which it failed.
        done = run_process(["--format", "jsonl", "--retries", "0", "--cacert", str(certs.ca_pem),
                            url, url, "https://" + url])  # fmt: skip
    assert len(records(done.stdout)) == 3, done.stderr
    for record in records(done.stdout):
        assert record["error"]["kind"] == "tls", record
        assert "alert certificate required" in record["error"]["message"], record
        assert "assumed" not in record["error"]["message"], record


def tls_fault_server(certs, behaviour):
    """A FaultServer speaking TLS: behaviour gets the TLS socket, once the handshake is done."""
    context = certs.server_context()

    def serve(conn):
        with context.wrap_socket(conn, server_side=True) as tls:
            behaviour(tls)

    return FaultServer(serve)


def head_of(conn) -> bytes:
    """Read up to the end of a request's header block (its body, if any, left unread)."""
    data = b""
    while b"\r\n\r\n" not in data and (piece := conn.recv(65536)):
        data += piece
    return data


def run_https(certs, *args):
    done = run_process(
        ["--format", "jsonl", "--retries", "0", "--cacert", str(certs.ca_pem), *args]
    )
    return done, records(done.stdout)


def test_an_early_refusal_of_an_https_upload_is_its_record(certs, tmp_path):
    """s37 r1 2: a server that answers 413 to a request's head and closes without reading the
    body failed the upload's write (SSLEOFError): the record said tls, 'EOF occurred in
    violation of protocol', the 413 unread. What the server said before its end is read as
    the answer, as curl reads it, and over plain http fetcher does."""
    refusal = b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"

    def behaviour(tls):
        head_of(tls)
        tls.sendall(refusal)
        time.sleep(0.5)  # the server's pace: its answer arrives well before its end (a reset)

    body = tmp_path / "big.bin"
    body.write_bytes(b"x" * 24_000_000)  # more than the system's buffers take at once
    with tls_fault_server(certs, behaviour) as server:
        _, [record] = run_https(certs, "-X", "PUT", "-d", f"@{body}",
                                f"https://127.0.0.1:{server.port}/up")  # fmt: skip
    assert record["status"] == 413 and record["error"]["kind"] == "http", record


def test_an_https_upload_on_a_kept_alive_connection_the_server_ended_is_sent_again(certs, tmp_path):
    """s37 r1 3: a kept-alive TLS connection the server ended as the next request went out
    (here it reads that request's head and closes, as an idle timeout that crossed it on the
    wire): the upload's write failed with SSLEOFError, which the resend of a request that died
    unanswered (reuse.py, as curl does) did not know, and the record said tls. It is sent again
    on a new connection, as over plain http."""

    def read_whole(tls, head):
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        rest = len(head.split(b"\r\n\r\n", 1)[1])
        while rest < length and (piece := tls.recv(65536)):
            rest += len(piece)

    def behaviour(tls):
        read_whole(tls, head_of(tls))
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        head_of(tls)  # the next request on this connection: its body unread, no answer

    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * 24_000_000)  # more than the system's buffers take at once
    with tls_fault_server(certs, behaviour) as server:
        urls = [f"https://127.0.0.1:{server.port}/{n}" for n in (1, 2)]
        _, found = run_https(certs, "-j", "1", "-X", "PUT", "-d", f"@{body}", *urls)
    assert [(r["ok"], r["attempts"]) for r in found] == [(True, 1), (True, 1)], found
    assert server.connections == 2


def test_an_early_200_then_the_end_of_an_https_upload_is_no_whole_upload(certs, tmp_path):
    """The other side of reading what came before the end: a 2xx to a body that did not all
    leave is no ok record (an upload cut, as over plain http), and is not sent again."""

    def behaviour(tls):
        head_of(tls)
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        time.sleep(0.5)  # as the 413's: its answer well before its end

    body = tmp_path / "big.bin"
    body.write_bytes(b"x" * 24_000_000)  # more than the system's buffers take at once
    with tls_fault_server(certs, behaviour) as server:
        _, [record] = run_https(certs, "--retries", "2", "-X", "PUT", "-d", f"@{body}",
                                f"https://127.0.0.1:{server.port}/up")  # fmt: skip
    assert record["ok"] is False and record["error"]["kind"] == "protocol", record
    assert record["attempts"] == 1 and server.connections == 1, record


def test_a_client_certificate_gone_during_the_run_is_this_machine_s_failure(
    mtls_server, certs, tmp_path
):
    """s32 t2 4: --cert removed while the run went on: the next connection's record was
    'other: Could not find the TLS certificate file', attempt 1, its host blamed. It is tls,
    no attempt, and names the file, as a CA bundle gone is."""
    cert = tmp_path / "client.pem"
    cert.write_bytes(certs.client_combined_pem.read_bytes())

    def route(path):
        cert.unlink()  # the first URL, plain http, is answered once the file is gone
        return 200, {}, b"plain", 0.0

    with counting_server(route) as plain:
        result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1", "--ordered",
                         "--cacert", str(certs.ca_pem), "--cert", str(cert),
                         plain.url("/first"), mtls_server.url("/after")])  # fmt: skip
    first, after = records(result.stdout)
    assert first["ok"] is True, first
    assert after["error"]["kind"] == "tls" and after["attempts"] == 0, after
    assert str(cert) in after["error"]["message"], after
    assert mtls_server.paths == [] and "most failures" not in result.stderr, result.stderr


def test_client_certificate_from_another_ca_is_tls(certs, tmp_path):
    """A client certificate the server does not trust is refused like a missing one."""
    stranger = make_certificates(tmp_path)
    with https_server(certs.server_context(require_client_cert=True)) as server:
        result, record = fetch(
            server.url("/stranger"),
            "--cacert", str(certs.ca_pem),
            "--cert", str(stranger.client_combined_pem),
        )  # fmt: skip

    assert_tls_failure(result, record)
    assert server.paths == []
    assert len(server.tls_errors) == 1 and "CERTIFICATE_VERIFY_FAILED" in server.tls_errors[0]


def test_key_without_cert_is_a_usage_error(server, certs):
    result = invoke(["--key", str(certs.client_key_pem), server.url("/never")])

    assert result.exit_code == 2
    assert "--key needs --cert" in result.stderr
    assert result.stdout == ""
    assert server.paths == []


@pytest.mark.parametrize("key", [None, "another"], ids=["no-key", "another-key"])
def test_a_certificate_without_its_key_is_a_usage_error(server, certs, tmp_path, key):
    """It failed every https URL at run time, servers that ask for no certificate too, with
    OpenSSL's "PEM lib" or "key values mismatch" naming neither option, exit 3 (s19 t1 D2);
    curl stops at once (58)."""
    args = ["--cert", str(certs.client_cert_pem)]
    if key:
        certs.server.private_key_pem.write_to_path(tmp_path / "other-key.pem")
        args += ["--key", str(tmp_path / "other-key.pem")]
    result = invoke([*args, "--cacert", str(certs.ca_pem), server.url("/never")])
    assert result.exit_code == 2, result.output
    said = "is not the certificate's" if key else "holds no private key"
    assert said in result.stderr and "--cert" in result.stderr, result.stderr
    assert server.paths == []


def test_a_certificate_openssl_refuses_for_another_reason_says_that_reason(server, tmp_path):
    """A --cert holding its 1024-bit key (too small for OpenSSL's default security level) was
    "holds no private key: give it with --key", sending the user to look for a key they gave
    (s19 r5 3): OpenSSL's reason is said."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "small")])
    now = datetime.datetime.now(datetime.UTC)
    later = now + datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(later).sign(key, hashes.SHA256()))  # fmt: skip
    both = tmp_path / "both.pem"
    both.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )  # fmt: skip
    )
    result = invoke(["--cert", str(both), server.url("/never")])
    if result.exit_code == 2:  # an OpenSSL that takes such keys runs, and fails on the CA
        assert "holds no private key" not in result.stderr and "OpenSSL" in result.stderr
    assert server.paths == []


def test_missing_cert_file_is_a_usage_error(server, tmp_path):
    result = invoke(["--cert", str(tmp_path / "absent.pem"), server.url("/never")])

    assert result.exit_code == 2
    assert "absent.pem" in result.stderr
    assert server.paths == []


# -- REQUESTS_CA_BUNDLE --------------------------------------------------------------------------


@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
def test_ca_bundle_variable_is_honoured_without_options(server, certs, variable):
    """The control for the tests below: requests really reads the variable in this setup."""
    result, record = fetch(server.url("/from-env"), **{variable: str(certs.ca_pem)})
    assert_ok(result, record, "/from-env")

    result, record = fetch(server.url("/other-env"), **{variable: str(certs.other_ca_pem)})
    assert_tls_failure(result, record)


@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
def test_cacert_wins_over_ca_bundle_variable(server, certs, variable):
    """requests' merge_environment_settings would replace a session's verify with the variable;
    fetcher passes --cacert with each request so that the command line wins."""
    env = {variable: str(certs.other_ca_pem)}
    result, record = fetch(server.url("/cacert-wins"), "--cacert", str(certs.ca_pem), **env)

    assert_ok(result, record, "/cacert-wins")


@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
def test_insecure_wins_over_ca_bundle_variable(server, certs, variable):
    result, record = fetch(server.url("/k-wins"), "-k", **{variable: str(certs.other_ca_pem)})

    assert_ok(result, record, "/k-wins")


def test_client_certificate_survives_ca_bundle_variable(mtls_server, certs):
    result, record = fetch(
        mtls_server.url("/mtls-env"),
        "--cacert", str(certs.ca_pem),
        "--cert", str(certs.client_combined_pem),
        REQUESTS_CA_BUNDLE=str(certs.other_ca_pem),
    )  # fmt: skip

    assert_ok(result, record, "/mtls-env")


# -- a CA bundle that cannot be used: a usage error at start --------------------------------------


def unusable_bundle(certs, tmp_path, kind):
    """A file OpenSSL finds no CA certificate in, as a user may give one."""
    path = tmp_path / f"{kind}.pem"
    contents = {
        "empty": b"",
        "der": ssl.PEM_cert_to_DER_cert(certs.ca.cert_pem.bytes().decode()),
        "key-only": certs.ca.private_key_pem.bytes(),
        "not-pem": b"just some text\n",
        "cut-short": certs.ca.cert_pem.bytes()[:300],
    }[kind]
    path.write_bytes(contents)
    return str(path)


BAD_BUNDLES = ["empty", "der", "key-only", "not-pem", "cut-short"]


@pytest.mark.parametrize("kind", BAD_BUNDLES)
def test_a_cacert_with_no_certificate_is_a_usage_error(server, certs, tmp_path, kind):
    """It was accepted, and every https URL then failed tls, one record each, exit 3 (s24 h1
    6): refused at start, as --cert and curl's 77 are."""
    result = invoke([server.url("/never"), "--cacert", unusable_bundle(certs, tmp_path, kind)])

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert f"--cacert {tmp_path}" in result.stderr and result.stdout == "", result.stderr
    assert server.paths == []


def test_a_cacert_variable_with_no_certificate_is_named_in_the_usage_error(server, certs, tmp_path):
    bad = unusable_bundle(certs, tmp_path, "empty")
    result = invoke([server.url("/never")], FETCHER_CACERT=bad)

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "FETCHER_CACERT" in result.stderr and "no PEM certificate" in result.stderr
    assert server.paths == []


def test_a_cacert_that_is_a_fifo_is_refused_without_waiting_for_it(server, tmp_path):
    """Read for every connection, which a pipe cannot give twice (as --cert); never opened."""
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)
    # A real process, which the timeout kills: opening the FIFO would wait for a writer.
    done = run_process([server.url("/never"), "--cacert", str(fifo)], timeout=30)

    assert done.returncode == 2 and b"not a regular file" in done.stderr, done.stderr
    assert server.paths == []


@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
@pytest.mark.parametrize("kind", ["missing", "empty", "der", "unsearchable"])
def test_a_ca_bundle_variable_that_cannot_be_used_is_said_once_and_named(
    server, certs, tmp_path, variable, kind
):
    """A missing path made every https URL 'other: Could not find a suitable TLS CA
    certificate bundle', one record each, the variable never named (s24 h1 5); an empty or
    DER one every URL tls. It is said once at start, naming it; the run goes on (s24 r7 3: an
    http-only run must not stop for it, as curl's does not), its https URLs failing."""
    if kind == "unsearchable":  # a folder the user cannot search: 'does not exist' lied (r7 6)
        if os.geteuid() == 0:
            pytest.skip("root searches every folder")
        locked = tmp_path / "locked"
        locked.mkdir()
        bad = str(locked / "ca.pem")
        (locked / "ca.pem").write_bytes(certs.ca.cert_pem.bytes())
        locked.chmod(0)
    else:
        bad = str(tmp_path / "absent.pem") if kind == "missing" else (
            unusable_bundle(certs, tmp_path, kind))  # fmt: skip
    result = invoke(["--format", "jsonl", "--retries", "0", server.url("/never")],
                    **{variable: bad})  # fmt: skip

    assert result.stderr.count(variable) == 1, result.stderr
    assert (
        bad in result.stderr
        and "https URLs (and any through an https proxy) will fail" in result.stderr
    ), result.stderr
    if kind == "missing":
        assert "does not exist" in result.stderr, result.stderr
    [record] = records(result.stdout)
    assert record["ok"] is False and result.exit_code == 3, (record, result.stderr)
    assert server.paths == []
    # This machine's failure, not the server's (s32 t2 3: an empty or DER one was attempt 1,
    # OpenSSL's words without the bundle's name, and the host was blamed in the summary).
    if kind != "unsearchable":
        assert record["attempts"] == 0 and bad in record["error"]["message"], record
        assert "most failures" not in result.stderr, result.stderr


def test_a_bad_ca_bundle_variable_does_not_stop_a_run_of_http_urls(tmp_path):
    """curl fetches http URLs whatever CURL_CA_BUNDLE says (77 is for https): an image that
    exports a CA path copied from another distribution stopped every http-only run (s24 r7 3).
    It is said, once; the http URL is fetched."""
    with counting_server() as plain:
        result = invoke([plain.url("/plain")], CURL_CA_BUNDLE=str(tmp_path / "absent.pem"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("CURL_CA_BUNDLE") == 1, result.stderr
    assert plain.paths == ["/plain"]


def test_a_ca_bundle_variable_is_shown_without_its_control_characters(tmp_path):
    """Its value was quoted raw: an OSC title sequence reached the terminal (s24 r7 8)."""
    with counting_server() as plain:
        result = invoke([plain.url("/p")], REQUESTS_CA_BUNDLE=f"{tmp_path}/no\x1b]0;t\x07.pem")
    assert "\x1b" not in result.stderr and "\\x1b" in result.stderr, result.stderr


@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
@pytest.mark.parametrize("option", ["--cacert", "-k"])
def test_a_bad_ca_bundle_variable_is_not_checked_when_an_option_replaces_it(
    server, certs, tmp_path, variable, option
):
    """--cacert and -k win over the variable (requests would not read it): it is no matter."""
    args = [option, str(certs.ca_pem)] if option == "--cacert" else [option]
    result, record = fetch(server.url("/unread"), *args, **{variable: str(tmp_path / "no.pem")})

    assert_ok(result, record, "/unread")


def test_a_ca_bundle_variable_naming_a_folder_is_still_read_as_a_folder(server, tmp_path):
    """requests takes a folder as OpenSSL's hashed-certificate folder: not refused at start; an
    empty one trusts nothing, which each https URL tells as tls."""
    result, record = fetch(server.url("/folder"), REQUESTS_CA_BUNDLE=str(tmp_path))

    assert_tls_failure(result, record)


# -- a redirect from http to https ---------------------------------------------------------------


def test_a_redirect_to_https_is_verified_with_cacert_and_presents_the_client_certificate(
    httpserver, mtls_server, certs
):
    """The TLS options are the run's, not the first URL's: the hop that a plain-http URL is
    redirected to is verified with --cacert (not the CA bundle of the environment) and shows
    the client certificate."""
    target = mtls_server.url("/hop")
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": target}
    )
    result, record = fetch(
        httpserver.url_for("/start"),
        "--cacert", str(certs.ca_pem),
        "--cert", str(certs.client_combined_pem),
        REQUESTS_CA_BUNDLE=str(certs.other_ca_pem),
    )  # fmt: skip

    assert_ok(result, record, "/hop")
    assert record["final_url"] == target and record["redirects"] == 1, record
    assert mtls_server.paths == ["/hop"]


def test_a_redirect_to_an_untrusted_https_server_is_tls(httpserver, server):
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": server.url("/hop")}
    )
    result, record = fetch(httpserver.url_for("/start"))

    assert_tls_failure(result, record)
    assert server.paths == []


# -- bytes past the end of an answer ---------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"HTTP/1.1 204 No Content\r\n\r\n"],
    ids=["longer-than-its-length", "204-with-a-body"],
)
def test_bytes_past_an_answer_over_tls_never_reach_the_next_one(certs, first):
    """Over TLS the check that a kept-alive connection is idle looked at the socket, not at
    what the TLS layer had already decrypted: the next URL on the connection read the last
    answer's extra bytes as its status line (protocol, 'bad status line GGG...'), a POST
    there failed outright (s17 h2 D6). Over plain http they were never read."""
    context = certs.server_context()

    def behaviour(conn):
        with context.wrap_socket(conn, server_side=True) as tls:
            while request := read_request(tls):
                if b" /first " in request:
                    tls.sendall(first + b"G" * 12000)  # past the 8 KiB read: TLS keeps some
                else:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")

    with FaultServer(behaviour) as server:
        urls = [f"https://127.0.0.1:{server.port}/{path}" for path in ("first", "next")]
        result = invoke(["--format", "jsonl", "--retries", "0", "-j", "1",
                         "--cacert", str(certs.ca_pem), *urls])  # fmt: skip
    records = {r["url"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records[urls[1]]["ok"] is True and records[urls[1]]["bytes"] == 4, records[urls[1]]


# -- a scheme fetcher assumed ---------------------------------------------------------------------


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["threads", "processes"])
def test_a_tls_failure_of_an_assumed_https_says_so_and_how_to_ask_for_http(processes):
    """'127.0.0.1:8080/a' is fetched as https (the default scheme), as curl would not: against a
    plain server the handshake fails, and the message names the https fetcher chose (s17 h3 4),
    under --processes too, whose worker knows only the URL with its scheme (s31 t2 2)."""
    with counting_server() as plain:
        result, record = fetch(f"127.0.0.1:{plain.port}/a", *processes)
        assert_tls_failure(result, record)
        assert record["error"]["message"].endswith(
            "(https:// assumed: give http:// or --default-scheme http)"
        ), record
        _, typed = fetch(f"https://127.0.0.1:{plain.port}/a")  # asked for: nothing assumed
        assert typed["error"]["kind"] == "tls" and "assumed" not in typed["error"]["message"]


def test_a_certificate_failure_of_a_scheme_less_url_does_not_advise_http(server, certs):
    """A server that speaks TLS, whose certificate is not trusted (or not for that name), was
    told '(https:// assumed: give http:// ...)': the one change that 'works', and sends the
    request, credentials and cookies in clear text (s18 r3 4). The hint is for a peer that does
    not speak TLS at all."""
    _, untrusted = fetch(f"127.0.0.1:{server.port}/a")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certs.ca.issue_cert("elsewhere.example").configure_cert(context)
    with https_server(context) as other:
        _, mismatch = fetch(f"127.0.0.1:{other.port}/a", "--cacert", str(certs.ca_pem))
    for record in (untrusted, mismatch):
        assert record["error"]["kind"] == "tls", record
        assert "assumed" not in record["error"]["message"], record


def test_a_handshake_a_plain_server_never_answers_says_https_was_assumed():
    """A plain server that waits for a request line never answers the TLS greeting: the URL
    read without a scheme failed as connect_timeout, 'handshake operation timed out', with no
    word of the https fetcher assumed (s18 r3 2)."""
    with FaultServer(silent) as quiet:
        _, record = fetch(f"127.0.0.1:{quiet.port}/a", "--connect-timeout", "0.3")
    assert record["error"]["kind"] == "connect_timeout", record
    assert record["error"]["message"].endswith(
        "(https:// assumed: give http:// or --default-scheme http)"
    ), record


@pytest.mark.parametrize("kind", ["fifo", "terminal", "missing"])
@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
def test_a_ca_bundle_variable_that_can_wait_fails_https_at_once_and_fetches_http(
    server, tmp_path, variable, kind
):
    """Said and then used, a FIFO held every https URL past -m in urllib3's open of it, while
    the line said they would fail (s24 r9 1); refusing the run then stopped http-only runs,
    which curl fetches whatever CURL_CA_BUNDLE says (s25 r1 6), and a terminal, only said,
    held every https URL reading it until someone typed (s25 r1 3). Now a bundle that is no
    regular file nor folder is never opened: each https URL fails at once, kind tls, naming
    it, and the http ones are fetched. One that is not there (a variable left over from
    another venv) failed as requests' plain OSError, kind other (s27 t3 1): tls too."""
    if kind == "missing":
        bundle = str(tmp_path / "gone.pem")
    elif kind == "fifo":
        bundle = str(tmp_path / "ca.fifo")
        os.mkfifo(bundle)
    else:
        master, slave = os.openpty()
        bundle = os.ttyname(slave)
    with counting_server() as plain:
        urls = [plain.url("/plain"), server.url("/never")]
        result = subprocess.run(
            [*FETCHER, "-m", "3", "--retries", "0", "--format", "jsonl", *urls],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
            env=clean_env(**{variable: bundle}),
        )  # fmt: skip
    if kind == "terminal":
        os.close(master)
        os.close(slave)
    assert result.returncode == 1, result.stderr
    said = b"does not exist" if kind == "missing" else b"not a regular file, nor a folder: not read"
    assert variable.encode() in result.stderr and said in result.stderr
    found = {record["url"]: record for record in map(json.loads, result.stdout.splitlines())}
    assert found[urls[0]]["ok"] is True and plain.paths == ["/plain"]
    failure = found[urls[1]]
    assert failure["error"]["kind"] == "tls" and bundle in failure["error"]["message"], failure
    assert failure["elapsed"] < 2, failure
    assert server.paths == []


def unreachable_bundle(tmp_path, kind):
    """A CA bundle path that cannot be looked at for another reason than its absence, and what
    the system says of it (strerror): a file taken for a folder, a symlink loop, a name too
    long. (A folder the user cannot search is another, which root cannot make.)"""
    if kind == "not-a-folder":
        (tmp_path / "file").write_bytes(b"")
        return str(tmp_path / "file" / "ca.pem"), os.strerror(errno.ENOTDIR)
    if kind == "loop":
        os.symlink(tmp_path / "loop-b", tmp_path / "loop-a")
        os.symlink(tmp_path / "loop-a", tmp_path / "loop-b")
        return str(tmp_path / "loop-a"), os.strerror(errno.ELOOP)
    return str(tmp_path / ("x" * 300)), os.strerror(errno.ENAMETOOLONG)


@pytest.mark.parametrize("kind", ["not-a-folder", "loop", "too-long"])
def test_a_ca_bundle_variable_that_cannot_be_looked_at_fails_https_as_tls_saying_why(
    server, tmp_path, kind
):
    """Only a missing path was said (s27 t3 1): a path whose stat failed otherwise (ENOTDIR,
    ELOOP, ENAMETOOLONG, EACCES) was left to requests, whose plain OSError made the failure
    kind other, 'Could not find a suitable TLS CA certificate bundle' (s27 r2 3). Now kind
    tls, naming the bundle and why, as the line at start does; http URLs are still fetched."""
    bundle, why = unreachable_bundle(tmp_path, kind)
    with counting_server() as plain:
        urls = [plain.url("/plain"), server.url("/never")]
        result = invoke(["--format", "jsonl", "--retries", "0", *urls], REQUESTS_CA_BUNDLE=bundle)
    assert f"cannot read REQUESTS_CA_BUNDLE ({bundle}): {why}" in result.stderr, result.stderr
    found = {record["url"]: record for record in records(result.stdout)}
    assert found[urls[0]]["ok"] is True and plain.paths == ["/plain"]
    error = found[urls[1]]["error"]
    assert error["kind"] == "tls", error
    assert f"the CA bundle {bundle} cannot be read: {why}" in error["message"], error
    assert server.paths == []


@pytest.mark.parametrize("through", ["direct", "https-proxy"])
def test_an_https_url_failing_on_the_ca_bundle_made_no_attempt_and_blames_no_host(
    server, tmp_path, through
):
    """Nothing was sent (the bundle is looked at before connecting), yet the record said
    attempts 1 and the summary named the server among the failing hosts (s27 r2 4). It is
    this machine's failure: attempts 0, no host, no request in the rate; still kind tls. The
    same for an http URL through an https proxy, whose TLS needs the bundle too."""
    summary = tmp_path / "summary.json"
    url, args = server.url("/never"), ["--summary", str(summary)]
    if through == "https-proxy":
        url, args = f"http://127.0.0.1:{server.port}/never", [*args, "-x", server.url("")]
    result, record = fetch(url, *args, REQUESTS_CA_BUNDLE=str(tmp_path / "gone.pem"))
    assert_tls_failure(result, record)
    assert record["attempts"] == 0, record
    counts = json.loads(summary.read_text())
    assert counts["by_host"] == {} and counts["by_kind"]["tls"]["count"] == 1, counts
    assert counts["requests_per_second"] == 0, counts
    assert server.paths == []


def test_a_redirect_to_https_failing_on_the_ca_bundle_counts_its_first_hop_and_no_host(
    httpserver, server, tmp_path
):
    """The first hop was sent and answered: one attempt. The failure after it is this
    machine's, not the redirecting host's nor the target's: no host counts it."""
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": server.url("/hop")}
    )
    summary = tmp_path / "summary.json"
    result, record = fetch(httpserver.url_for("/start"), "--summary", str(summary),
                           REQUESTS_CA_BUNDLE=str(tmp_path / "gone.pem"))  # fmt: skip
    assert_tls_failure(result, record)
    assert record["attempts"] == 1 and record["redirects"] == 1, record
    assert json.loads(summary.read_text())["by_host"] == {}
    assert server.paths == []


@pytest.mark.parametrize("before", [0, (1 << 20) - 10, 3 << 20])
def test_a_pem_certificate_is_found_wherever_it_starts(tmp_path, before):
    """Read a MiB at a time (64 MiB at once cost 60 MB of memory: s24 r9 4), a mark across two
    reads included."""
    from fetcher.http.environment import pem_certificate_in

    bundle = tmp_path / "late.pem"
    with bundle.open("wb") as file:
        file.write(
            b"#" * before + b"\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        )
    assert pem_certificate_in(str(bundle))
    (tmp_path / "none.pem").write_bytes(b"#" * before + b"\n")
    assert not pem_certificate_in(str(tmp_path / "none.pem"))
