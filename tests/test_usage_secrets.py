"""A usage error never shows a URL password (SPEC §2.4), whatever option took the URL as its
value: `fetcher -m https://alice:pw@host/` is wget's --mirror, `-j URL` curl's
--junk-session-cookies, `--results $R URL` an unset variable in a cron script (s22 h2 1).

The message is masked where SectionedCommand handles every usage error (Click's types,
fetcher's own, the checks made after parsing), and a value cut short to be quoted is masked
before it is cut: a cut could leave a password without the "@" that shows it is one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fetcher.redact import MASK
from tests.conftest import FETCHER, clean_env, invoke, run_process
from tests.servers import CountingServer
from tests.test_secrets import MARK, NOT_FETCHED, secret
from tests.test_state_crash import state_run_changed_midway

PW = secret("S3cretPW")

# The options the tester found printing the URL, and the names their message says.
OPTIONS = ["-t", "-m", "--retry", "--connect-timeout", "--rate", "--host-rate", "--shard",
           "--results", "--failed", "--state", "--summary", "--metrics", "--cacert", "--cert",
           "--key", "-j", "--per-host", "--max-size", "--skip-fresh", "--ok-status",
           "--retry-on", "--metrics-label", "--input-format", "--format", "--default-scheme",
           "--processes", "--max-redirects", "--backoff"]  # fmt: skip
URLS = {
    "scheme": f"https://alice:{PW}@127.0.0.1:18443/site/",
    "no-scheme": f"alice:{PW}@127.0.0.1:18443/site/",
    "long-user": f"https://alice-with-a-long-name:{PW}@127.0.0.1:18443/site/",  # cut copies
}


def assert_masked_usage_error(output: str, code: int, option: str) -> None:
    assert code == 2, output
    assert MARK not in output
    assert "Error:" in output
    assert option in output  # still says which option is wrong
    assert f":{MASK}@" in output or "Usage:" in output, output


@pytest.mark.parametrize("form", sorted(URLS))
@pytest.mark.parametrize("option", OPTIONS)
def test_a_url_taken_as_an_options_value_is_masked_in_the_usage_error(
    tmp_path, monkeypatch, option, form
):
    monkeypatch.chdir(tmp_path)  # the output files' checks look at the folder they name
    result = invoke([option, URLS[form], NOT_FETCHED])
    assert_masked_usage_error(result.output, result.exit_code, option)
    if (option, form) == ("--processes", "long-user"):  # quoted to its 20th character only
        pass
    elif option in ("--cert", "--key") and form == "no-scheme":
        # curl's FILE:PASSWORD: all that follows the first ':' is hidden (t5 1)
        assert f"'alice:{MASK}'" in result.output
    else:
        assert f":{MASK}@" in result.output  # the value is quoted, its password masked
    assert not list(tmp_path.iterdir())


def test_curls_junk_session_cookies_flag_is_masked():
    result = invoke(["-L", "-j", URLS["scheme"]])
    assert_masked_usage_error(result.output, result.exit_code, "-j")


@pytest.mark.parametrize(
    ("variable", "option"),
    [("FETCHER_MAX_TIME", "--max-time"), ("FETCHER_PROCESSES", "--processes"),
     ("FETCHER_MAX_SIZE", "--max-size"), ("FETCHER_RESULTS", "--results")],
)  # fmt: skip
def test_a_url_in_an_options_variable_is_masked_in_the_usage_error(
    tmp_path, monkeypatch, variable, option
):
    monkeypatch.chdir(tmp_path)
    result = invoke([NOT_FETCHED], **{variable: URLS["scheme"]})
    assert_masked_usage_error(result.output, result.exit_code, option)


@pytest.mark.parametrize("option", ["-m", "--processes", "--results"])
def test_the_command_masks_it_too(tmp_path, option):
    """The real entry point (python -m fetcher), standard error as a cron mail gets it."""
    done = run_process([option, URLS["scheme"], NOT_FETCHED], cwd=tmp_path)
    output = (done.stdout + done.stderr).decode()
    assert_masked_usage_error(output, done.returncode, option)


def test_a_state_file_removed_under_a_url_shaped_folder_is_reported_masked(
    server: CountingServer, tmp_path: Path
):
    """The end-of-run messages about --state, --failed and -c quote the path as given: one
    made of a URL (`--state https://alice:pw@host/s.db`, a variable's mistake) is masked."""
    folder = tmp_path / "https:" / f"alice:{PW}@127.0.0.1"
    folder.mkdir(parents=True)
    process, _, stderr, _ = state_run_changed_midway(server, folder, Path.unlink)
    assert process.returncode == 1, stderr
    assert b"was removed or replaced during the run" in stderr
    assert MARK.encode() not in stderr
    assert f"alice:{MASK}@".encode() in stderr


# curl's --cert and --key take FILE[:PASSWORD] (t5 1): the pass phrase, one with a ':' in it too.
PASSPHRASE = f"{MARK}:x{MARK}"
CURL_FORMS = {
    "option": lambda option, value: ([f"--{option}", value], {}),
    "equals": lambda option, value: ([f"--{option}={value}"], {}),
    "variable": lambda option, value: ([], {f"FETCHER_{option.upper()}": value}),
}


@pytest.mark.parametrize("route", sorted(CURL_FORMS))
@pytest.mark.parametrize("option", ["cert", "key"])
def test_curls_file_colon_password_is_refused_without_the_password(
    tmp_path, monkeypatch, option, route
):
    """The file exists: curl's certificate[:password] is recognised and refused (an encrypted
    key cannot be read here), naming the file and what to do, never the pass phrase."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "client.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    args, env = CURL_FORMS[route](option, f"client.pem:{PASSPHRASE}")
    result = invoke([*args, NOT_FETCHED], **env)
    assert result.exit_code == 2, result.output
    assert MARK not in result.output
    assert f"--{option}" in result.output
    assert "client.pem" in result.output
    assert "openssl pkey" in result.output  # what to do instead
    assert "does not exist" not in result.output


@pytest.mark.parametrize("route", sorted(CURL_FORMS))
@pytest.mark.parametrize("option", ["cert", "key"])
def test_a_missing_file_with_a_colon_is_named_without_what_follows(
    tmp_path, monkeypatch, option, route
):
    """No such file: the usage error names the file up to its first ':' only, as curl splits
    FILE:PASSWORD there (a pass phrase may hold ':' itself)."""
    monkeypatch.chdir(tmp_path)
    args, env = CURL_FORMS[route](option, f"missing.pem:{PASSPHRASE}")
    result = invoke([*args, NOT_FETCHED], **env)
    assert result.exit_code == 2, result.output
    assert MARK not in result.output
    assert f"--{option}" in result.output
    assert f"missing.pem:{MASK}" in result.output


def test_the_command_prints_no_pass_phrase_from_fetcher_cert(tmp_path):
    """The real entry point, the variable usage.md gives for keeping secrets out of ps."""
    (tmp_path / "client.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    env = clean_env(FETCHER_CERT=f"client.pem:{PASSPHRASE}")
    done = subprocess.run([*FETCHER, NOT_FETCHED], capture_output=True, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert MARK.encode() not in done.stdout + done.stderr
    assert b"client.pem" in done.stderr


@pytest.mark.parametrize("value", ["https://vault.example/client.pem:{pw}",
                                   "http://vault.example:{pw}",
                                   "https://alice:x@vault.example/c.pem:{pw}"])  # fmt: skip
@pytest.mark.parametrize("option", ["--cert", "--key"])
def test_a_url_like_cert_value_shows_nothing_after_its_colons(tmp_path, monkeypatch, option, value):
    """`--cert https://vault.example/client.pem:PW` printed the PW its message said it hid:
    only a URL's user info was masked (s28 r2 4). curl reads what follows the first ':' as the
    pass phrase; past the scheme and the user info, nothing after a ':' is shown."""
    monkeypatch.chdir(tmp_path)
    result = invoke([option, value.format(pw=PW), NOT_FETCHED])
    assert result.exit_code == 2, result.output
    assert MARK not in result.output and "vault.example" in result.output
