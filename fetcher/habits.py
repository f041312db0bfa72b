"""curl's habits (spec section 2): the curl flags fetcher accepts because they mean the same thing
here, how they fold into fetcher's own options, and the curl options that mean something else
here, refused with what to use instead.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import click
from click.decorators import FC

from fetcher.given import (
    as_given,
    ignore_variables,
    typed,
    typed_wins,
    variable_of,
    warn,
)
from fetcher.variables import VariableOption

ENV_PREFIX = "FETCHER_"


def habit(*decls: str, **attrs: Any) -> Callable[[FC], FC]:
    """A curl flag: a click flag whose environment variable is FETCHER_<LONG NAME>, shown."""
    long_name = next(d for d in decls if d.startswith("--"))
    envvar = ENV_PREFIX + long_name[2:].replace("-", "_").upper()
    return click.option(
        *decls, cls=VariableOption, is_flag=True, envvar=envvar, show_envvar=True, **attrs
    )


REQUEST_HABITS = [
    # Not curl's header block: a record has no field for headers (s26 h5 5).
    habit("-I", "--head",
          help="Send HEAD, no body (curl -I): the record holds the status, reason, final URL "
               "and Content-Type; no other header, nor the length, is shown (-vv neither)."),
    habit("-L", "--location",
          help="Accepted for curl: redirects are followed already (--no-follow to not)."),
    habit("--compressed",
          help="Accepted for curl: bodies are asked for compressed and decoded already."),
]  # fmt: skip

OUTPUT_HABITS = [
    habit("-f", "--fail",
          help="Accepted for curl: a status of 400 or more is a failure already."),
    habit("-s", "--silent", help="-q, and no progress display (curl -s)."),
    habit("-S", "--show-error",
          help="With -s or -q: print the summary all the same when the exit status is not 0 "
               "(curl -sS)."),
    habit("-R", "--remote-time",
          help="Give each file saved under -o the server's Last-Modified time."),
    habit("-J", "--remote-header-name",
          help="With -o: name each saved file after the server's Content-Disposition filename, "
               "in DIR/<host>[_<port>]/."),
]  # fmt: skip

# Accepted and nothing more: what they ask for is what fetcher does anyway.
NO_OPS = ("location", "compressed", "fail")


def fold_habits(params: dict[str, Any], urls: tuple[str, ...] = ()) -> None:
    """Turn the curl flags in params (the command's parsed options) into fetcher's own options,
    in place: -s into -q and no progress, -I into -X HEAD; the no-ops go. Raises
    click.UsageError for combinations curl refuses too, for a no-op beside an option that says
    the opposite, and for -o given a file."""
    check_contradictions(params)
    for name in NO_OPS:
        params.pop(name)
    fold_quiet(params)
    fold_head(params)
    if params["remote_header_name"] and params["output_dir"] is None:
        raise click.UsageError(
            f"{as_given('remote_header_name', '-J')} names the files saved under -o DIR: give "
            "-o DIR too (fetcher never writes a file named by a server into the current folder)"
        )
    if params["remote_time"] and params["output_dir"] is None:  # as -J: else it does nothing
        if typed("remote_time"):
            raise click.UsageError(
                "-R gives the files saved under -o DIR the server's time: give -o DIR too"
            )
        # A profile's FETCHER_REMOTE_TIME refused every run without -o (s26 r3 2).
        ignore_variables(params, ["remote_time"], "without -o DIR: no file is saved")
    if params["output_dir"] is not None:
        # the URL arguments: beside an -i, a run of several URLs, no curl -o FILE (s32 r3 7)
        try:
            problem = output_dir_problem(params["output_dir"], () if params["inputs"] else urls)
        except OSError as error:
            from fetcher.owners import changed_while_looked_at

            problem = changed_while_looked_at(error)
        if problem is not None:
            raise click.UsageError(problem)
    check_urls_given_as_files(params, urls)
    say_globs(urls, params)


# What curl expands in a URL (its globbing): a set {a,b} and a range [1-3], [a-z], [01-10:2].
CURL_GLOB = re.compile(r"\{[^{}]*,[^{}]*\}|\[(?:\d+-\d+|[a-z]-[a-z]|[A-Z]-[A-Z])(?::\d+)?\]")


def say_globs(urls: tuple[str, ...], params: dict[str, Any]) -> None:
    """Say, once, that a URL argument holding what curl expands into several URLs is fetched
    as written: img[1-3].jpg went out as one request for img%5B1-3%5D.jpg, ok on a server that
    answers any path, nothing said (s32 t5 3). Not under -q."""
    # curl globs the whole URL, its host and query too (s33 r1 2): an IPv6 literal is no glob
    # (it has no '-' or ','), nor is a scheme
    globbed = sum(1 for url in urls if CURL_GLOB.search(url))
    if globbed and not params["quiet"]:
        warn(
            f"fetcher: {globbed} URL argument{'s hold' if globbed > 1 else ' holds'} a curl glob "
            "([1-3], {a,b}), fetched as written, one URL (curl -g): let the shell expand braces, "
            "or give the URLs one a line (seq, printf)"
        )


def check_contradictions(params: dict[str, Any]) -> None:
    """-L and -f are accepted because they mean what fetcher does anyway; beside --no-follow,
    or an --ok-status that counts a status of 400 or more as ok, they mean the opposite. Which
    one is meant cannot be told, wherever each came from: a usage error that names both."""
    if params["location"] and params["no_follow"]:
        raise click.UsageError(
            f"{as_given('location', '-L')} follows redirects: it cannot go with "
            f"{as_given('no_follow', '--no-follow')}"
        )
    redirects = ("no_follow", "--no-follow"), ("max_redirects", "--max-redirects")
    if (
        params["no_follow"]
        and (typed("max_redirects") or variable_of("max_redirects"))
        and not typed_wins(params, *redirects)
    ):
        raise click.UsageError(
            f"{as_given('no_follow', '--no-follow')} follows no redirect: it cannot go with "
            f"{as_given('max_redirects', '--max-redirects')}"
        )
    ranges = () if params["ok_status"] is None else params["ok_status"].ranges
    counted_ok = [(max(first, 400), last) for first, last in ranges if last >= 400]
    if params["fail"] and counted_ok:
        shown = ",".join(f"{first}-{last}" if last > first else str(first)
                         for first, last in counted_ok)  # fmt: skip
        raise click.UsageError(
            f"{as_given('fail', '-f')} fails a status of 400 or more: it cannot go with "
            f"{as_given('ok_status', '--ok-status')}, which counts {shown} as ok"
        )


def fold_quiet(params: dict[str, Any]) -> None:
    """-s is -q with no progress display; --progress given beside it still shows one. A -s or
    -q typed on the command line beats FETCHER_PROGRESS: a display asked for by a variable (a
    profile's) must not reach a cron job's stderr."""
    silent = params.pop("silent")
    if (typed("silent") or typed("quiet")) and variable_of("progress") is not None:
        params["progress"] = None
    if silent:
        params["quiet"] = True
        if params["progress"] is None:
            params["progress"] = False


def fold_head(params: dict[str, Any]) -> None:
    """-I is -X HEAD (checked by check_head); -X HEAD with -d is a usage error, as in curl."""
    method = params["method"]
    if params["head"]:
        check_head(params)
    if params.pop("head"):
        params["method"] = "HEAD"
    elif params["data"] and (method or "").upper() == "HEAD":
        raise click.UsageError(
            f"{as_given('method', f'-X {method}')} has no body: it cannot go with "
            f"{as_given('data', '-d')} (-I sends HEAD)"
        )


def check_head(params: dict[str, Any]) -> None:
    """-I with -X of another method, or with -d, is a usage error, as in curl; with --body or
    --include-body too, which would write nothing (s26 h1 5), unless one of them was typed and
    the other came from its variable: the typed one stands (fetcher.given.typed_wins)."""
    method, head = params["method"], as_given("head", "-I")
    if method not in (None, "HEAD"):
        raise click.UsageError(
            f"{head} sends HEAD: it cannot go with {as_given('method', f'-X {method}')}"
        )
    if params["data"]:
        raise click.UsageError(
            f"{head} sends HEAD, which has no body: it cannot go with {as_given('data', '-d')}"
        )
    for name, shown in (("body", "--body"), ("include_body", "--include-body")):
        # No body comes back: none to write, the record's is not null.
        if (
            params[name]
            and params["head"]
            and not typed_wins(params, ("head", "-I"), (name, shown))
        ):
            raise click.UsageError(
                f"{head} sends HEAD, whose answer has no body: it cannot go with "
                f"{as_given(name, shown)}"
            )


def check_urls_given_as_files(params: dict[str, Any], urls: tuple[str, ...] = ()) -> None:
    """wget's -c URL (continue) and curl's -i URL (headers in the output): here -c and -i take
    files, and a URL given to them was refused as a file that cannot be read or written. And
    the other way round, a file given as a URL (urls, the arguments): -i FILE."""
    from fetcher.redact import redact_url  # a URL's password is never printed

    check_cookie_jar(params, urls)
    # An option that took the next option for its value ('--results -i list.txt', '-x -i
    # list.txt') is told so later: its message is the one that helps.
    swallowed = any(
        text[:1] == "-" and len(text) > 1
        for text in (*(v for v in params.values() if isinstance(v, str)),
                     *(text for _, _, text in values_as_typed(params)))
    )  # fmt: skip
    for url in () if swallowed else urls:
        check_url_argument(url)
    for path in params.get("inputs", ()):
        if "://" in path and not os.path.lexists(path):
            raise click.UsageError(
                f"-i takes a FILE of URLs, not {redact_url(path)!r}: give a URL as an argument "
                "(curl's -i, which shows the headers, has no equal here: --format jsonl shows "
                "the status and content type)"
            )
    check_urls_given_as_values(params, urls)
    check_urls_given_as_written_files(params, urls)
    check_header_split(params, urls)


def nothing_to_fetch(params: dict[str, Any], urls: tuple[str, ...]) -> bool:
    """Whether no URL argument, -i or --retry-failed is given: standard input is read then, from
    cron an empty one. Not told by what standard input is: cron's is a pipe, which it closes
    (s37 r3 1 took back a look at it, which let the cron lines these checks are for through)."""
    return not (urls or params.get("inputs") or params.get("retry_failed"))


def check_urls_given_as_written_files(params: dict[str, Any], urls: tuple[str, ...]) -> None:
    """cron's `--results $OUT example.org/feed.xml`, OUT empty: the URL was the file's name,
    standard input (an empty one) was read, and the run ended 0 having fetched nothing, a file
    named after the URL made or emptied (a wget mirror's copy of that very URL: s37 t2 1). A
    value written as a URL without its scheme, a host and a path (not a name alone:
    results.de, urls.in, out-12:30:00 are names of files: s37 r2 3), is refused when no URL is
    given, as wget's -c HOST is; ./NAME names such a file."""
    from fetcher.redact import redact_url

    if not nothing_to_fetch(params, urls):
        return
    for name, shown in _WRITTEN_FILES:
        value = params.get(name)
        if value and typed(name) and _URL_WITH_A_PATH.fullmatch(value):
            raise click.UsageError(
                f"{shown} takes a FILE, and no URL is given: {redact_url(value)!r} looks like a "
                f"URL meant to be fetched. Give the URLs as arguments, or on standard input "
                f"with -i -; for a file of that name, write {shown} ./{redact_url(value)}"
            )


# The first word of an Authorization value (IANA's registry, and the common others): a -H that
# ends with one of them left its credentials to the next argument. Lower case.
AUTH_SCHEMES = frozenset({
    "basic", "bearer", "digest", "dpop", "gnap", "hoba", "mutual", "negotiate", "ntlm", "oauth",
    "privatetoken", "scram-sha-1", "scram-sha-256", "vapid", "token", "bot", "apikey",
    "api-key", "key", "jwt", "sso-key", "ssws", "aws4-hmac-sha256",
})  # fmt: skip


def check_header_split(params: dict[str, Any], urls: tuple[str, ...]) -> None:
    """Unquoted, -H Authorization: Bearer TOKEN URL is -H 'Authorization:' (a removal), then
    'Bearer' and the token as URLs: the token was looked up as a host and printed in its record
    and the summary (s29 r2 4). A credential -H with no value, or with a scheme word alone, and a
    URL argument without '://' (the token; a URL written whole is no piece of a value) is that
    split: refused, no argument shown. A removal before whole URLs stands (netrc's)."""
    from fetcher.redact import SENT_SECRET_HEADERS

    if not typed("headers") or all("://" in url for url in urls):
        return
    for name, value in params.get("headers") or ():
        key = name.lower()
        scheme_alone = key.endswith("authorization") and (value or "").lower() in AUTH_SCHEMES
        if key in SENT_SECRET_HEADERS and (value is None or scheme_alone):
            raise click.UsageError(
                f"-H '{name}:' is followed by arguments that look like the rest of its value "
                f"(the shell splits at blanks): quote it, -H '{name}: …', and write the URLs "
                "with their scheme (https://…). The arguments are not shown"
            )


def check_url_argument(url: str) -> None:
    """A URL argument that another habit gave: a file of URLs, a header, a command's word, a
    number. Refused before anything is fetched (each would be looked up as a host)."""
    # 'fetcher urls.txt': a DNS lookup. Not a URL with a path (example.com/robots.txt),
    # whose file an earlier 'fetcher -o .' may have saved right here.
    if "://" not in url and "/" not in url and os.path.isfile(url):
        raise click.UsageError(f"{url!r} is a file here: to read URLs from it, use -i {url}")
    if (header := _credential_header(url)) is not None:  # -H forgotten, or --head's
        raise click.UsageError(f"'{header}: …' is a header, not a URL: give it with -H "
                               f"'{header}: VALUE' (its value is not shown)")  # fmt: skip
    if url.lower() in _COMMAND_WORDS:  # 'fetcher help' looked up the host help (s30 t1 7)
        raise click.UsageError(
            f"{url!r} is no URL: fetcher --help shows the options, fetcher --version the "
            f"version (a host named so is fetched as http://{url}/)"
        )
    if url.isascii() and url.isdigit():  # https://4 is the address 0.0.0.4 (s25 h2 7)
        raise click.UsageError(
            f"{url!r} is no URL: a number alone would be fetched as https://{url}. aria2's "
            "-s N (pieces of one download) has no equal here; -j N fetches N URLs at once"
        )


# What -c's value is when another tool's habit gave it: httpx's -fc (filter-code) STATUSES, read as
# -f -c; wget's -c (continue) HOST, a name with one of these last labels, an address or a port.
# A status (three digits, 1xx to 5xx), or a list or range of them, blanks around ',' and '-'
# too ('404, 403'); or httpx's -ffc HASH (filter-favicon, -f -f -c), a signed 32-bit number of
# nine or ten digits. Not any number: a jar of the day, -c $(date +%F), is 2024-06-01; and a
# jar of the moment, -c $(date +%s), ten digits within a year of now (``_is_now``).
_STATUS = r"[1-5][0-9]{2}"
_STATUSES = re.compile(rf"{_STATUS}(?:\s*[-,]\s*{_STATUS})*\s*,?|-?[0-9]{{9,10}}")
EPOCH_YEAR = 366 * 86400  # seconds either side of now in which ten digits are a time
_HOST = re.compile(
    r"(?:localhost|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9.-]+:[0-9]{1,5}"
    r"|(?:[A-Za-z0-9-]+\.)+(?:com|net|org|edu|gov|mil|int|info|biz|io|dev|app|ai|co|me|xyz"
    r"|cloud|online|site|tech|us|uk|de|fr|nl|eu|ru|jp|cn|in|br|au|ca|ch|it|es|se|no|pl|be"
    r"|at|cz|dk|fi|tv))(?::[0-9]{1,5})?",
    re.IGNORECASE,
)
JAR_OF_THAT_NAME = "for a cookie jar of that name, write -c ./{}"
# A URL written without its scheme, as fetcher reads one (SPEC 2.1), with a path, a query or a
# fragment after its host (example.org/feed.xml, localhost:9100/metrics): a host alone
# (results.de) or a name with a colon (out-12:30:00) is as likely a file's name, a body, a user.
_URL_WITH_A_PATH = re.compile(rf"(?:{_HOST.pattern})[/?#].*", re.IGNORECASE | re.DOTALL)
# The options that name a file fetcher writes, as their parameters are called and shown.
_WRITTEN_FILES = (("results", "--results"), ("summary", "--summary"), ("metrics", "--metrics"),
                  ("failed", "--failed"), ("state", "--state"))  # fmt: skip


# Words a new user types for a command's help or version, not a host: `fetcher help`.
_COMMAND_WORDS = frozenset({"help", "version", "usage", "man"})


def _credential_header(argument: str) -> str | None:
    """The name of the credential header argument is a line of (Authorization, Cookie,
    Proxy-Authorization), or None. Fetched as a URL, its invalid_url record and the summary
    showed the token (s29 t3 3): '--head' is -I, not -H, and -H is easily forgotten."""
    from fetcher.redact import SENT_SECRET_HEADERS

    found = re.match(r"\s*([A-Za-z-]+)\s*:(?!\d*(?:[/?#]|$))", argument)  # cookie:8080/x: a host
    return found[1] if found and found[1].lower() in SENT_SECRET_HEADERS else None


def check_cookie_jar(params: dict[str, Any], urls: tuple[str, ...]) -> None:
    """-c FILE is curl's cookie jar, written into the current folder after the run: a value
    another tool's habit gave it is refused before it is written. wget's -c URL or -c HOST
    (continue), httpx's -fc STATUSES (filter-code, read as -f -c). A host is refused only when
    no URL is given (a jar may be named after its site): standard input is then read, from cron
    or ssh an empty one, and the run ended 0 having fetched nothing. A file there is a jar."""
    from fetcher.redact import redact_url

    jar = params.get("cookie_jar")
    if jar is None or os.path.lexists(jar):
        return
    if "://" in jar:
        raise click.UsageError(
            f"-c takes the cookie FILE (as curl's -c), not {redact_url(jar)!r}: wget's -c, "
            "which continues downloads, is --continue here (with --state and -o)"
        )
    if not typed("cookie_jar"):
        return
    if _STATUSES.fullmatch(jar) and not _is_now(jar):
        raise click.UsageError(
            f"-c takes the cookie FILE (as curl's -c), not the statuses {jar!r}: httpx's -fc "
            "(filter-code), read here as -f -c, has no equal: every URL gets a record (--format "
            "jsonl and jq's select(.status != N) leave some out); " + JAR_OF_THAT_NAME.format(jar)
        )
    if jar.startswith("-") and jar != "-":  # wget's `-c -i list.txt`: -c took '-i' for its
        # jar (s35 t6 2); '-', curl's standard output, has its own message (s35 r3 8)
        raise click.UsageError(
            f"-c takes the cookie FILE (as curl's -c), not {jar!r}, which looks like an option: "
            "wget's -c, which continues downloads, is --continue here (with --state and -o); "
            f"for a jar of that name, write ./{jar}"
        )
    if nothing_to_fetch(params, urls) and _HOST.fullmatch(jar):
        raise click.UsageError(
            f"-c takes the cookie FILE (as curl's -c), and no URL is given: {jar!r} looks like "
            "a host meant for wget's -c, which continues downloads (--continue here, with --state "
            "and -o). Give the URLs as arguments, or on standard input with -i -; "
            + JAR_OF_THAT_NAME.format(jar)
        )


def _is_now(text: str) -> bool:
    """Whether text is a Unix time of these years (-c $(date +%s)), not a favicon hash: ten
    digits within EPOCH_YEAR of now. A hash is uniform over 32 bits: about 1.5 % of them fall
    there and are taken for a jar's name (a new file is made: nothing else is lost)."""
    return len(text) == 10 and text.isdigit() and abs(int(text) - time.time()) <= EPOCH_YEAR


def check_urls_given_as_values(params: dict[str, Any], urls: tuple[str, ...]) -> None:
    """A URL, or another option, taken for an option's value on the command line (a variable's
    value took nothing from it): wget's -x (--force-directories) and -d (--debug), httpx's -u
    TARGET, wget's -H (--span-hosts) before a URL. A proxy URL with a path (its path is never
    used), a header named http, a user named http are a URL always: refused, other URLs given
    or not (-x URL1 URL2 sent URL2 through URL1's host, and URL1 had no record). A URL as -d's
    or -A's text may be meant: refused only when nothing else gives URLs, since the list is
    then read from standard input (from cron or ssh an empty one, and the run ended 0 having
    fetched nothing). aria2's -d DIR (its download folder) POSTed DIR's name to every URL."""
    names = _option_names()
    typed_values = values_as_typed(params)
    for _, shown, text in typed_values:
        if text in names:
            raise click.UsageError(
                f"{shown} took {text!r} for its value: give {shown} its value before {text}"
            )
    nothing_else = nothing_to_fetch(params, urls)
    for name, shown, text in typed_values:
        always = name in ("proxy", "headers", "user")
        # Written without its scheme too, with a path (s37 t2 2): -u example.org/x sent Basic
        # credentials of that name. Not -A's (bot.io/1.0 is a user agent), nor a user's with a
        # password (alice:1234/abcd read as host, port and path was refused, the message
        # showing the password: s37 r2 1).
        bare = name in ("user", "data") and _URL_WITH_A_PATH.fullmatch(text) is not None
        bare = bare and (name != "user" or ":" not in text)
        if (always or nothing_else) and (bare or _is_url(text, path_needed=name == "proxy")):
            given = "" if always else ", and no URL is given"
            raise click.UsageError(
                f"{shown} took {_quoted(shown, text)} as its value{given}: put the URLs after "
                f"{shown}'s value"
                + ("" if always else ", or give them on standard input with -i -")
            )
        if name == "data" and _names_a_folder(text):
            raise click.UsageError(
                f"-d sends TEXT as each request's body (curl's --data), and {text!r} is a "
                "folder here: aria2's -d DIR is -o DIR here (to send that text, put it in a "
                "file and give -d @FILE)"
            )


def _quoted(shown: str, text: str) -> str:
    """text, a value taken for a URL, as a refusal quotes it: a URL written whole (its scheme
    says it is one), and a proxy's and a user agent's value, with any URL password masked; a
    body's, a header's or a user's read as a URL without its scheme not at all ('…': a -d body
    of 'token:31337/secret' read as host, port and path was shown whole, s37 r4 1)."""
    from fetcher.redact import redact_url

    whole = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text) is not None  # not '://' later (r5 1)
    bare = not whole and shown in SECRET_VALUES and shown != "-x"
    return "'…'" if bare else repr(redact_url(text))


def _names_a_folder(text: str) -> bool:
    """Whether -d's text is written as a path ('/srv/dl', './dl', '..', '~/dl') to a folder that
    exists: a bare word ('ping') is a body, whatever folder of that name is here."""
    pathlike = "/" in text or text in (".", "..") or text.startswith("~")
    return pathlike and os.path.isdir(os.path.expanduser(text))


def values_as_typed(params: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(parameter name, option, value as typed) for the options given on the command line whose
    values are text that a URL or another option may have been taken for: -x, -u, -d, -H, -A."""
    found = []
    if params.get("proxy") and typed("proxy"):
        typed_proxy = params["proxy"]
        found.append(("proxy", "-x", typed_proxy))
        found.append(("proxy", "-x", typed_proxy.split("://", 1)[1]))  # 'http://' put before it
    if params.get("user") and typed("user"):
        user, password = params["user"]
        found.append(("user", "-u", user if password is None else f"{user}:{password}"))
    if typed("data"):
        found += [("data", "-d", piece) for piece in params.get("data") or ()]
    if typed("headers"):
        headers = params.get("headers") or ()
        found += [("headers", "-H", f"{name}:{value or ''}") for name, value in headers]
    if typed("user_agent"):
        found.append(("user_agent", "-A", params["user_agent"]))
    return found


def _option_names() -> set[str]:
    """The options of the command being run ('-i', '--input', ...); none outside one."""
    context = click.get_current_context(silent=True)
    if context is None:
        return set()
    return {name for param in context.command.params for name in param.opts}


def _is_url(text: str, path_needed: bool = False) -> bool:
    """Whether text is an http(s) URL as a whole; with path_needed, one with a path or query."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or " " in text:
        return False
    return not path_needed or parts.path not in ("", "/") or bool(parts.query)


# The end of a name that looks like a file's: a dot, then up to 5 letters and digits, at least
# one of them a letter (out.html, urls.txt, page.json; not v1.2 nor backup.2024).
FILE_SUFFIX = re.compile(r"[^./][^/]*\.(?=[A-Za-z0-9]{0,4}[A-Za-z])[A-Za-z0-9]{1,5}")
BODY_TO_STDOUT = "to write bodies to standard output, use --body"
TO_A_FILE = "to save one body to a file, use --body > FILE; for the records, --results FILE"


def _dangling_link_in(folder: str) -> str | None:
    """The first of folder's leading paths (``a``, ``a/b``, ...) that is a link to nothing."""
    names = folder.split("/")
    for end in range(1, len(names) + 1):
        path = "/".join(names[:end])
        if path and os.path.islink(path) and not os.path.exists(path):
            return path
    return None


def output_dir_problem(folder: str, urls: tuple[str, ...] = ()) -> str | None:
    """Why -o FOLDER is refused, or None. -o takes a folder (curl's -o takes a file): a folder
    that exists is always fine; '-', a URL and a new name that looks like a file name, or is
    the file name of one of urls (the arguments), are refused, with what to use instead. A
    trailing '/' says "a folder, whatever its name". Each message names FETCHER_OUTPUT_DIR
    when the folder came from it (s26 h1 6)."""
    option = as_given("output_dir", "-o")
    if folder == "-":
        return f"{option} takes a folder, not '-' (curl's standard output): {BODY_TO_STDOUT}"
    if _is_url(folder):
        from fetcher.redact import redact_url

        return (
            f"{option} takes a folder, not the URL {redact_url(folder)!r}: give the URLs after "
            "-o DIR (each body is saved as DIR/<host>/<path>)"
        )
    if (link := _dangling_link_in(folder)) is not None:  # as mkdir -p: not made through it
        named = (
            f"{option} {folder!r} is"
            if link == folder.rstrip("/")
            else f"{link!r}, in {option} {folder!r}, is"
        )
        return (
            f"{named} a symbolic link to {os.readlink(link)!r}, which does not exist: make that "
            "folder first, or give -o another one"
        )
    from fetcher.output.atomic import planted_folder, unexpanded_home  # not for --help

    if (home := unexpanded_home(folder)) is not None:  # FETCHER_OUTPUT_DIR='~/dl' (cron)
        return f"{option} {folder!r}: {home}"
    if (planted := planted_folder(folder)) is not None:
        return f"{option} {folder!r}: {planted}"
    if os.path.isdir(folder) or folder.endswith(("/", os.sep)):
        return None
    return new_output_dir_problem(folder, option, urls)


def _file_name(url: str) -> str:
    """The last name of url's path ('' when the path ends in '/': a folder's)."""
    from urllib.parse import unquote, urlsplit

    try:
        return unquote(urlsplit(url).path.rpartition("/")[2])
    except ValueError:
        return ""


def new_output_dir_problem(folder: str, option: str, urls: tuple[str, ...] = ()) -> str | None:
    """output_dir_problem's for a folder that is not there yet, option naming -o as given."""
    long = as_given("output_dir", "--output-dir")
    if folder.startswith("-"):  # -o -i list.txt: -o took '-i' for its folder
        return (
            f"{option} {folder!r} looks like an option; for a folder of that name, write "
            f"./{folder}/"
        )
    if os.path.lexists(folder):
        return f"{long} {folder!r} is a file, not a folder (-o takes one): {TO_A_FILE}"
    name = os.path.basename(folder)
    # curl's install line, `curl -fsSLo kubectl URL/kubectl`: a folder kubectl/ and exit 0,
    # and the script's next step, far from the cause, failed (s32 t5 1)
    # curl's -o FILE takes one URL: among several, a name is a folder's (s32 r2 3)
    url = urls[0] if len(urls) == 1 and name and _file_name(urls[0]) == name else None
    if url is not None or FILE_SUFFIX.fullmatch(name):
        from fetcher.redact import redact_url

        named = "looks like a file name"
        if url is not None:
            named = f"is the file name of {redact_url(url)}"
        return (
            f"{option} takes a folder (each body is saved as DIR/<host>/<path>), and {folder!r} "
            f"{named}: {TO_A_FILE}; for a new folder of that name, write it {folder}/"
        )
    return None


# curl options that mean something else here (or nothing): what to use instead.
REFUSED = {
    "-O": "-O (curl's --remote-name) is not an option here: -o DIR saves each body as "
    "DIR/<host>/<path>, named after its URL (-J: after the server's Content-Disposition); "
    "wget's -O FILE is --body > FILE here (-O -: --body)",
    "--output": "--output is not an option here (curl's -o FILE): -o/--output-dir DIR saves each "
    f"body under DIR; {TO_A_FILE}",
    "-w": "-w (curl's --write-out) is not an option here: every record has the status, size "
    "and time; --format jsonl or csv gives them all, for jq or a spreadsheet; wget's -w "
    "(--wait) is --host-rate R here",
    "-Z": "-Z (curl's --parallel) is what fetcher does: -j N fetches N URLs at once (16 unless "
    "told)",
}
# wget's, and curl's resume: what does that here.
REFUSED |= {
    "-C": "-C (curl's --continue-at) is not an option here: --continue, with --state FILE and "
    "-o DIR, resumes a download cut short, in this run or the next",
    "--no-check-certificate": "--no-check-certificate (wget's) is -k/--insecure here",
    "--tries": "--tries (wget's) is --retries N here (the attempts after the first)",
    "--spider": "--spider (wget's) is -I/--head here: a HEAD request per URL, nothing saved",
}
# Options Click would answer with a wrong guess ('--url': "did you mean --user", which sends the
# URL as a password), or none, and wget's that mean something else here.
REFUSED |= {
    "--url": "--url (curl's) is not needed here: give URLs as arguments, or -i FILE",
    "--body-data": "--body-data (wget's) is -d/--data here (-d @FILE for a file)",
    "-P": "-P (wget's --directory-prefix) is -o DIR here: each body saved as DIR/<host>/<path>",
    "-N": "-N: wget's --timestamping is --state FILE here (each run asks the server whether "
    "what it saved changed, and keeps it when not); curl's --no-buffer is what fetcher does",
    "-T": "-T: wget's --timeout is -t/--timeout SECONDS here; curl's --upload-file has no "
    "equal (-d @FILE sends a file's bytes, with POST)",
    "-n": "-n: wget's -nc (--no-clobber) has no equal here (a saved file is replaced only by a "
    "whole new body; --state FILE --skip-fresh DURATION skips what was fetched recently); "
    "-nv is -q; -nd, -nH and -np have none either (-o DIR saves each body as "
    "DIR/<host>/<path>, and no link is followed); curl's -n (--netrc) is what fetcher does "
    "unless -u is given",
    "--referer": "--referer is -H 'Referer: URL' here",
    "-e": "-e: curl's --referer is -H 'Referer: URL' here; wget's -e COMMAND has no equal",
    "--wait": "--wait (wget's) is --host-rate R here (requests a second to each host; --rate "
    "for all of them)",
    "--limit-rate": "--limit-rate has no equal here: --rate R and --host-rate R limit requests "
    "a second, not bytes",
    "--content-disposition": "--content-disposition (wget's) is -J here, with -o DIR",
    "-l": "-l: httpx's -l (-list) is -i FILE here; curl's --list-only (FTP) has no equal",
}
# curl's proxy options: Click guessed --user and --header, which send to every origin server.
REFUSED |= {
    "--proxy-user": "--proxy-user (curl's) goes in the proxy URL here: -x "
    "http://USER:PASSWORD@HOST:PORT (or HTTPS_PROXY); -u would send them to every server",
    "--proxy-header": "--proxy-header (curl's) has no equal here: -H goes to every server, not "
    "the proxy; the proxy's credentials go in -x http://USER:PASSWORD@HOST:PORT",
    "--noproxy": "--noproxy (curl's) is the NO_PROXY variable here: NO_PROXY='*' fetches every "
    "URL directly, NO_PROXY=host1,host2 those hosts",
}
for _tls in ("--proxy-insecure", "--proxy-cacert", "--proxy-cert", "--proxy-key"):
    REFUSED[_tls] = (
        f"{_tls} (curl's) has no equal here: fetcher checks an https proxy as it checks the "
        "servers; -k, --cacert, --cert and --key apply to the proxy and every server alike"
    )
REFUSED["-U"] = (
    "-U: curl's --proxy-user goes in the proxy URL here: -x http://USER:PASSWORD@HOST:PORT (-u "
    "would send them to every server); wget's --user-agent is -A here"
)
REFUSED["--parallel"] = REFUSED["-Z"]
REFUSED["--post-data"] = "--post-data (wget's) is -d/--data here (-d @FILE for a file)"
REFUSED["--directory-prefix"] = REFUSED["-P"]
REFUSED["--timestamping"] = REFUSED["-N"]
REFUSED["--no-clobber"] = REFUSED["-n"]
REFUSED["--remote-name"] = REFUSED["-O"]
REFUSED["--remote-name-all"] = REFUSED["-O"].replace("-O (curl's --remote-name)",
                                                    "--remote-name-all (curl's)", 1)  # fmt: skip
REFUSED["-#"] = REFUSED["--progress-bar"] = (
    "-# (curl's --progress-bar) is what fetcher shows on a terminal already: --progress and "
    "--no-progress turn it on and off"
)
REFUSED["--write-out"] = REFUSED["-w"]
REFUSED["--continue-at"] = REFUSED["-C"]

# More of curl's and wget's, which had Click's bare "No such option" or a guess that means
# something else: '--netrc-file' got "did you mean --failed", which writes over the file named,
# and '--retry-delay' "--retry", a count (s22 h2 11). None is taken as an alias (spec section 2
# lists those): each differs here in some way, which the message says.
NO_ADDRESS_CHOICE = (
    "has no equal here: fetcher connects as the system resolves the host; give an address in "
    "the URL (http://[::1]/ for IPv6)"
)
ASKED_FOR = "-u USER here, which asks for the password on the terminal"
REFUSED |= {
    "--retry-delay": "--retry-delay (curl's) is --backoff S here: the first wait before a retry, "
    "doubled each time, with jitter (--max-retry-wait S: the longest)",
    "--retry-max-time": "--retry-max-time (curl's) is --max-time S here: the whole time one URL "
    "may take, its retries included",
    "--retry-connrefused": "--retry-connrefused (curl's) is what fetcher does: connection "
    "errors, a refused connection too, are retried already (--retries N)",
    "--retry-all-errors": "--retry-all-errors (curl's) has no equal here: connection errors and "
    "timeouts are retried already, and --retry-on STATUSES says which statuses are",
    "--waitretry": "--waitretry (wget's) is --backoff S here: the first wait before a retry, "
    "doubled each time (--max-retry-wait S: the longest)",
    "--request": "--request (curl's) is -X/--method METHOD here",
    "--no-proxy": "--no-proxy (wget's) is the NO_PROXY variable here: NO_PROXY='*' fetches every "
    "URL directly",
    "--resolve": "--resolve (curl's) has no equal here: for http, give the address in the URL "
    "and -H 'Host: NAME'; for https, whose certificate is checked against the URL's host, a "
    "line in /etc/hosts",
    "-r": "-r: curl's --range is -H 'Range: bytes=START-END' here; wget's -r (--recursive) has "
    "no equal: fetcher fetches the URLs it is given, and no link is followed",
    "--recursive": "--recursive (wget's) has no equal here: fetcher fetches the URLs it is "
    "given, and no link is followed (-o DIR saves each as DIR/<host>/<path>)",
    "--netrc-file": "--netrc-file (curl's) is the NETRC variable here: NETRC=FILE fetcher ... "
    "(without -u, ~/.netrc is read already)",
    "--netrc": "--netrc (curl's) is what fetcher does unless -u is given: ~/.netrc (or the file "
    "NETRC names) is read for each URL's host",
    "--json": "--json (curl's) is -d DATA -H 'Content-Type: application/json' -H 'Accept: "
    "application/json' here; records as JSON are --format jsonl",
    "--digest": "--digest (curl's) has no equal here: -u sends basic authentication only (an "
    "Authorization header of another scheme goes in -H)",
    "--basic": "--basic (curl's) is what -u does: -u sends basic authentication already",
    "--fail-with-body": "--fail-with-body (curl's): a status of 400 or more is a failure "
    "already (as -f), and its body is written with --body, or added to each record with "
    "--include-body (--format jsonl)",
    "--data-urlencode": "--data-urlencode (curl's) has no equal here: -d sends TEXT as given, so "
    "%-encode it first (NAME=VALUE pieces joined with '&')",
    "--data-binary": "--data-binary (curl's) is -d here: -d @FILE sends the file's bytes as "
    "they are, line ends and all",
    "--data-raw": "--data-raw (curl's) is -d here, but for a TEXT that starts with @ (which -d "
    "reads as a file's name): put such a text in a file and give -d @FILE",
    "-G": "-G (curl's --get) has no equal here: put the query in the URL (-d always sends a body)",
    "-F": "-F: curl's --form (a multipart body) has no equal here: -d sends TEXT or @FILE's "
    "bytes as the body, -H 'Content-Type: ...' its type; wget's -F (--force-html) has none "
    "either",
    "-K": "-K: curl's --config has no equal here: FETCHER_ variables set the options "
    "(FETCHER_HEADER, FETCHER_WORKERS, ...), from a file with 'set -a; . ./fetcher.env'; "
    "wget's -K (--backup-converted) has none either",
    "-D": "-D: curl's --dump-header has no equal here: --format jsonl gives each status, final "
    "URL and content type; wget's -D (--domains) has none either (no link is followed)",
    "-4": f"-4 (--ipv4) {NO_ADDRESS_CHOICE}",
    "-6": f"-6 (--ipv6) {NO_ADDRESS_CHOICE}",
    "-E": "-E: curl's --cert is --cert FILE here (with --key FILE; an encrypted key cannot be "
    "read); wget's -E (--adjust-extension) has no equal",
    "--create-dirs": "--create-dirs (curl's) is what -o DIR does: -o DIR makes the folders it "
    "needs",
    "--ask-password": f"--ask-password (wget's) is {ASKED_FOR}",
    "--password": f"--password (wget's) goes with the user: {ASKED_FOR}",
    "--keep-session-cookies": "--keep-session-cookies (wget's) is what -c FILE does: its session "
    "cookies are saved with the others (expiry 0, as curl writes them)",
    "--load-cookies": "--load-cookies (wget's) is -c FILE here, which loads FILE before the run "
    "and saves the cookies back to it after",
    "--connect-to": "--connect-to (curl's) has no equal here: for http, give the address in the "
    "URL and -H 'Host: NAME'; for https, a line in /etc/hosts",
    "--range": "--range (curl's) is -H 'Range: bytes=START-END' here",
    "--get": "--get (curl's) has no equal here: put the query in the URL (-d always sends a body)",
    "--form": "--form (curl's, a multipart body) has no equal here: -d sends TEXT or @FILE's "
    "bytes as the body, -H 'Content-Type: ...' its type",
    "--config": "--config (curl's) has no equal here: FETCHER_ variables set the options "
    "(FETCHER_HEADER, FETCHER_WORKERS, ...), from a file with 'set -a; . ./fetcher.env'",
    "--dump-header": "--dump-header (curl's) has no equal here: --format jsonl gives each "
    "status, final URL and content type",
    "--save-cookies": "--save-cookies (wget's) is -c FILE here, which loads FILE before the run "
    "and saves the cookies back to it after",
}
for _name in ("--ntlm", "--negotiate", "--anyauth"):
    REFUSED[_name] = (
        f"{_name} (curl's) has no equal here: -u sends basic authentication only (an "
        "Authorization header of another scheme goes in -H)"
    )
for _name in ("--ipv4", "--ipv6", "--inet4-only", "--inet6-only"):
    REFUSED[_name] = f"{_name} {NO_ADDRESS_CHOICE}"
for _name in ("--http-user", "--http-password"):
    REFUSED[_name] = f"{_name} (wget's) is {ASKED_FOR}"
REFUSED["--mirror"] = REFUSED["--recursive"].replace("--recursive", "--mirror", 1)

# And more (s22 r2 5): Click's guess for each meant something else, often an option that writes
# the file named ('--trace F' and '--stderr F': --state, '--fail-early': --failed, wget's
# '--output-file LOG': --output-dir), or it had none ('--http2': --help, '--tlsv1.2': nothing).
NO_EQUAL = "has no equal here"
NO_LINK_FOLLOWED = "fetcher fetches the URLs it is given, and no link is followed"
VERBOSE = "-v logs each URL's outcome to standard error, -vv urllib3's connection log too"
RECORDS_SAY = "--format jsonl gives each status, final URL and content type"
REFUSED |= {
    "--output-document": "--output-document (wget's -O FILE) is --body > FILE here "
    "(--output-document -: --body)",
    "--output-file": "--output-file (wget's -o, its log) is 2> FILE here: fetcher's messages go "
    "to standard error, the records to standard output",
    "--append-output": "--append-output (wget's -a, its log) is 2>> FILE here",
    "--certificate": "--certificate (wget's) is --cert FILE here (with --key FILE)",
    "--private-key": "--private-key (wget's) is --key FILE here, with --cert FILE",
    "--pass": f"--pass (curl's, a key's pass phrase) {NO_EQUAL}: an encrypted --key cannot be "
    "read; decrypt it first (openssl pkey -in KEY -out PLAIN.pem)",
    "--stderr": "--stderr (curl's) is 2> FILE here: fetcher's messages go to standard error, "
    "the records to standard output",
    "--globoff": "--globoff (curl's -g) is what fetcher does: [] and {} in a URL are never "
    "expanded, each URL is fetched as written",
    "--speed-time": f"--speed-time (curl's) {NO_EQUAL}: -t/--timeout S ends a request when no "
    "byte came for S seconds, -m/--max-time S bounds one URL's whole time",
    "--http1.1": "--http1.1 (curl's) is what fetcher does: it speaks HTTP/1.1",
    "--fail-early": f"--fail-early (curl's) {NO_EQUAL}: every URL is fetched and gets a "
    "record, and the exit status says whether some failed",
    "--disable": "--disable (curl's -q: no .curlrc) is what fetcher does: it reads no config "
    "file (FETCHER_ variables set the options)",
    "--time-cond": "--time-cond (curl's -z) is --state FILE here: each run asks the server "
    "whether what it saved changed",
    "--etag-save": "--etag-save (curl's) is --state FILE here, which keeps each URL's ETag",
    "--location-trusted": f"--location-trusted (curl's) {NO_EQUAL}: credentials never go to "
    "another host on a redirect; give that host's URL with its own",
    "--junk-session-cookies": f"--junk-session-cookies (curl's -j) {NO_EQUAL}: a -c file's "
    "session cookies are loaded with the others",
    "--oauth2-bearer": "--oauth2-bearer (curl's) is -H 'Authorization: Bearer TOKEN' here",
    "--proxy-password": "--proxy-password (wget's) goes in the proxy URL here: -x "
    "http://USER:PASSWORD@HOST:PORT (or HTTPS_PROXY)",
    "--proxy-basic": "--proxy-basic (curl's) is what fetcher does: a proxy's credentials go in "
    "-x http://USER:PASSWORD@HOST:PORT, sent as Basic",
    "--proxytunnel": "--proxytunnel (curl's) is what fetcher does for https URLs (CONNECT); an "
    "http URL goes to the proxy whole",
    "--upload-file": f"--upload-file (curl's -T) {NO_EQUAL}: -d @FILE sends a file's bytes, "
    "with POST (-X PUT for a PUT)",
    "--post-file": "--post-file (wget's) is -d @FILE here (a POST)",
    "--body-file": "--body-file (wget's) is -d @FILE here, with -X METHOD",
    "--start-pos": "--start-pos (wget's) is -H 'Range: bytes=START-' here",
    "--include": f"--include (curl's -i) {NO_EQUAL}: {RECORDS_SAY} (-I sends HEAD)",
    "--server-response": f"--server-response (wget's -S) {NO_EQUAL}: {RECORDS_SAY}",
    "--save-headers": f"--save-headers (wget's) {NO_EQUAL}: {RECORDS_SAY}",
    "--form-string": REFUSED["--form"].replace("--form", "--form-string", 1),
    "--url-query": f"--url-query (curl's) {NO_EQUAL}: put the query in the URL",
    "--no-buffer": "--no-buffer (curl's -N) is what fetcher does",
    "--no-verbose": "--no-verbose (wget's -nv) is -q here",
    "--debug": f"--debug (wget's -d) is -v here: {VERBOSE}",
    "--no-cache": "--no-cache (wget's) is -H 'Cache-Control: no-cache' here",
    "--no-cookies": f"--no-cookies (wget's) {NO_EQUAL}: each worker keeps the cookies servers "
    "set during the run, and -c FILE saves them",
    "--quota": f"--quota (wget's) {NO_EQUAL}: --max-size BYTES bounds each body",
    "--random-wait": f"--random-wait (wget's) {NO_EQUAL}: --host-rate R spaces the requests "
    "to each host",
    "--background": f"--background (wget's -b) {NO_EQUAL}: nohup fetcher ... & runs it so",
    "--execute": f"--execute (wget's -e) {NO_EQUAL}",
    "--https-only": f"--https-only (wget's) {NO_EQUAL}: give https:// URLs (lines without a "
    "scheme are https already, --default-scheme)",
    "--no-netrc": f"--no-netrc (wget's) {NO_EQUAL}: -u USER[:PASSWORD] is sent instead of "
    "~/.netrc's credentials",
    "--no-iri": f"--no-iri (wget's) {NO_EQUAL}: a URL's non-ASCII host is sent as IDNA, the rest "
    "%-escaped as UTF-8",
}
for _name in ("--trace", "--trace-ascii", "--trace-time", "--trace-ids", "--trace-config",
              "--libcurl"):  # fmt: skip
    REFUSED[_name] = f"{_name} (curl's) {NO_EQUAL}: {VERBOSE} (2> FILE keeps it)"
REFUSED["--speed-limit"] = REFUSED["--speed-time"].replace("--speed-time", "--speed-limit", 1)
REFUSED["--parallel-max"] = REFUSED["--parallel-immediate"] = REFUSED["-Z"]
REFUSED["-g"] = REFUSED["--globoff"]
REFUSED["-z"] = REFUSED["--time-cond"]
for _name in ("--keepalive-time", "--no-keepalive", "--no-http-keep-alive", "--tcp-nodelay",
              "--tcp-fastopen"):  # fmt: skip
    REFUSED[_name] = (
        f"{_name} {NO_EQUAL}: each worker keeps its connections alive, with the system's TCP "
        "settings"
    )
for _name in ("--http2", "--http2-prior-knowledge", "--http3", "--http3-only", "--http1.0",
              "--http0.9"):  # fmt: skip
    REFUSED[_name] = f"{_name} (curl's) {NO_EQUAL}: fetcher speaks HTTP/1.1"
for _name in ("--tlsv1", "--tlsv1.0", "--tlsv1.1", "--tlsv1.2", "--tlsv1.3", "--tls-max",
              "--sslv2", "--sslv3", "--secure-protocol", "--ciphers", "--tls13-ciphers",
              "--curves"):  # fmt: skip
    REFUSED[_name] = (
        f"{_name} {NO_EQUAL}: fetcher uses TLS 1.2 or 1.3, as the server offers (urllib3's "
        "defaults)"
    )
for _name in ("--cert-type", "--key-type", "--certificate-type", "--private-key-type"):
    REFUSED[_name] = f"{_name} {NO_EQUAL}: --cert and --key are read as PEM (openssl converts)"
for _name in ("--capath", "--ca-directory"):
    REFUSED[_name] = f"{_name} {NO_EQUAL}: --cacert FILE trusts a bundle of PEM certificates"
for _name in ("--crlfile", "--crl-file", "--egd-file", "--random-file", "--false-start",
              "--append", "--variable", "--unix-socket", "--abstract-unix-socket"):  # fmt: skip
    REFUSED[_name] = f"{_name} {NO_EQUAL}"
for _name in ("--proxy-digest", "--proxy-ntlm", "--proxy-negotiate", "--proxy-anyauth"):
    REFUSED[_name] = f"{_name} (curl's) {NO_EQUAL}: a proxy's credentials are sent as Basic"
for _name in ("--socks4", "--socks4a", "--socks5", "--socks5-hostname", "--preproxy"):
    REFUSED[_name] = f"{_name} (curl's) {NO_EQUAL}: -x takes an http:// or https:// proxy"
for _name in ("--proto", "--proto-redir", "--proto-default"):
    REFUSED[_name] = (
        f"{_name} (curl's) {NO_EQUAL}: only http and https URLs are fetched or followed "
        "(--default-scheme for lines without one)"
    )
for _name in ("--hsts", "--hsts-file", "--no-hsts"):
    REFUSED[_name] = f"{_name} {NO_EQUAL}: fetcher keeps no HSTS list; give https:// URLs"
for _name in ("--interface", "--local-port", "--bind-address", "--dns-servers",
              "--dns-interface", "--doh-url", "--prefer-family", "--no-dns-cache"):  # fmt: skip
    REFUSED[_name] = f"{_name} {NO_ADDRESS_CHOICE}"
for _name in ("--ignore-content-length", "--ignore-length"):
    REFUSED[_name] = (
        f"{_name} {NO_EQUAL}: a body that falls short of its Content-Length, or a bad one, is "
        "never ok"
    )
for _name in ("--post301", "--post302", "--post303"):
    REFUSED[_name] = (
        f"{_name} (curl's) {NO_EQUAL}: a POST redirected by 301 or 302 becomes a GET, as in "
        "browsers, a 303 makes a GET of anything but a HEAD; 307 and 308 keep the method"
    )
for _name in ("--level", "--no-parent", "--span-hosts", "--page-requisites", "--convert-links",
              "--accept", "--reject", "--domains", "--exclude-domains", "--relative",
              "--include-directories", "--exclude-directories", "--delete-after",
              "--backup-converted", "--adjust-extension", "--cut-dirs", "--no-directories",
              "--force-directories", "--no-host-directories",
              "--protocol-directories"):  # fmt: skip
    REFUSED[_name] = (
        f"{_name} (wget's) {NO_EQUAL}: {NO_LINK_FOLLOWED} (-o DIR saves each body as "
        "DIR/<host>/<path>)"
    )

REFUSED["--netrc-optional"] = REFUSED["--netrc"].replace("--netrc", "--netrc-optional", 1)

# Other tools' names, whose guesses by Click meant something else (s26 h1 9): '--concurrency'
# got --insecure, which turns off TLS verification; '--resume' --results, '--ssl' --silent.
for _name in ("--concurrency", "--threads", "--jobs"):
    REFUSED[_name] = f"{_name} is -j N here (-j/--workers: N URLs fetched at once, 16 unless told)"
REFUSED |= {
    "--resume": "--resume is --continue here, with --state FILE and -o DIR: a download cut short "
    "is resumed, in this run or the next",
    "--ca-bundle": "--ca-bundle is --cacert FILE here (a bundle of PEM certificates)",
    "--out": "--out is -o DIR here (-o/--output-dir: each body saved as DIR/<host>/<path>); "
    f"{TO_A_FILE}",
    "--show-headers": f"--show-headers (curl's -i) {NO_EQUAL}: {RECORDS_SAY} (-I sends HEAD)",
    "--ssl": f"--ssl (curl's, for FTP, IMAP...) {NO_EQUAL}: https:// URLs use TLS, and "
    "certificates are verified (-k turns that off, --cacert FILE trusts a CA)",
}


# httpx's (Go's) options, spelled with one dash: Click reads '-json' as -j 'son'.
ONE_DASH = {
    "silent": "-s here",
    "json": "--format jsonl here",
    "csv": "--format csv here",
    "list": "-i FILE here",
    "threads": "-j N here",
    "status-code": "in every record here (its status)",
    "follow-redirects": "what fetcher does (--no-follow to not)",
    "rate-limit": "--rate R here",
    "output": "--results FILE here",
    # Read as -c WORD (-cname: -c name), or -f -c WORD: a cookie jar named WORD, written here.
    "cl": "in every record here (its bytes)",
    "ct": "in every record here (content_type, with --format jsonl or csv)",
    "cname": "not in the records here (dig HOST CNAME shows it)",
    "cdn": "not in the records here (no CDN is told apart)",
    "fcdn": "not done here: every URL gets a record, one served by a CDN too",
    "csp-probe": "not done here: no link, nor a CSP's domain, is followed",
    "config": "the FETCHER_ variables here (FETCHER_WORKERS, FETCHER_HEADER, ...)",
    "cpe": "not in the records here (no CPE is matched)",
    "csvo": "not needed here: --format csv writes UTF-8",
    "cff": "not done here: no fingerprint is matched",
    "ffc": "not done here: every URL gets a record (no favicon is fetched)",
    # Read as -d WORD (-fdc: -f -d c): every URL POSTed with the body WORD.
    "fdc": "not done here: every URL gets a record (--format jsonl and jq's select() leave "
    "some out)",
    "delay": "--host-rate R here (requests a second to each host; --rate R for all of them)",
    "debug": "-v here (-vv: urllib3's connection log too)",
    "debug-req": "-vv here",
    "debug-resp": "-vv here",
    "deny": "not done here: every URL given is fetched",
    "duc": "not needed here: fetcher checks for no update",
    # Read as -u WORD (Basic credentials to every server) and -o DIR (every body saved there).
    "unsafe": "not done here: each request is sent as urllib3 writes it",
    "update": "not done here: fetcher is updated as it was installed",
    "up": "not done here: fetcher is updated as it was installed",  # -u p: credentials sent
    "oa": "--results FILE here (with --format jsonl or csv); for a folder named a, -o a",
    "ob": "what fetcher does without -o DIR or --body; for a folder named b, -o b",
}


def one_dash_word(argument: str, options: set[str]) -> str | None:
    """The usage error for a word given with one dash ('-json', '-retries'): httpx's habit, or
    one of fetcher's options; None for anything else (a cluster of short options: '-sS')."""
    word = argument[1:]
    if word in ONE_DASH:  # two letters too: -cl is no cluster of curl's, but -c l
        return f"{argument} (httpx's) is {ONE_DASH[word]}: an option with one dash is one letter"
    if len(word) > 2 and ("--" + word in options or word == "help"):  # Click's own --help
        return f"{argument} is --{word} here: an option with one dash is one letter"
    if re.fullmatch(r"[a-z]+(?:-[a-z0-9]+)+", word):  # httpx's -omit-body: -o 'mit-body'
        return (  # its value not shown: -kuapi-token is -k -u api-token (s29 r2 3)
            f"{argument[:2]}… is no option here (httpx's?): an option with one dash is one "
            "letter, so this reads as letters and a value; fetcher's long options take two "
            "dashes (fetcher --help). For a letter with a value, give the value apart: -o DIR"
        )
    return None


# Short options whose value may be a secret (a password, a token, a proxy's credentials, a
# body): a message shows their value as '…'.
SECRET_VALUES = frozenset({"-u", "-H", "-b", "-x", "-d"})


def glued_to_equals(argument: str, valued: set[str]) -> str | None:
    """The usage error for a short option that takes a value glued to '=' (-o=dl: Go's and
    httpx's -flag=value habit), or None. Click, as getopt and curl, took '=dl' for the value:
    bodies went under ./=dl/, -u=bob sent the user '=bob' (s26 h1 8); the last letter of a
    cluster too (-so=dl, -su=bob: s26 r3 4). --long=value is kept."""
    found = cluster_value(argument, valued)
    if found is None or not found[1].startswith("="):
        return None
    option, letters = found[0], argument[: len(argument) - len(found[1])]
    secret = option in SECRET_VALUES
    shown = f"{letters}=…" if secret else argument
    value = "VALUE" if secret else found[1][1:]
    return f"{shown}: a short option's value follows it without '=' ({letters} {value})"


def cluster_value(argument: str, valued: set[str]) -> tuple[str, str] | None:
    """For a word of short options (-o, -sSo, -so=dl), as Click reads it: the one that takes a
    value (of valued) and what follows it in the word, its value ('' when the next argument is
    its value); None for a word with no such option, a --long option or no option."""
    if argument[:1] != "-" or argument.startswith("--"):
        return None
    for index, letter in enumerate(argument[1:], 2):
        if f"-{letter}" in valued:  # the rest of the word is its value, or the next argument
            return f"-{letter}", argument[index:]
    return None


def option_words(arguments: list[str], valued: set[str]) -> Iterator[str]:
    """The arguments (those before '--') that Click reads as options or URLs: all but the value
    of an option that takes the next argument as its value, after a cluster too (-sd -o=1
    sends the body '-o=1', as -d -o=1 does: s26 r3 5)."""
    is_value = False
    for argument in arguments:
        if is_value:
            is_value = False
            continue
        yield argument
        if argument.startswith("--"):
            is_value = argument in valued  # --name=value holds its own
        else:
            found = cluster_value(argument, valued)
            is_value = found is not None and found[1] == ""


def times_given(arguments: list[str], names: set[str], valued: set[str]) -> int:
    """How many times one of names (an option's, as '-o' and '--output-dir') is given among the
    arguments (those before '--'), in a cluster too (-sSo DIR); the values of options that take
    one (valued) are skipped, as Click skips them."""
    count = 0
    for argument in option_words(arguments, valued):
        if argument.startswith("--"):
            count += argument.split("=", 1)[0] in names
        elif argument[:1] == "-":
            found = cluster_value(argument, valued)
            letters = argument[1 : len(argument) - len(found[1]) if found else None]
            count += sum(f"-{letter}" in names for letter in letters)
    return count


def refusal(option: str | None) -> str | None:
    """The message for a curl option given to fetcher that means something else here, or None
    for an option that is simply unknown."""
    return REFUSED.get(option or "")
