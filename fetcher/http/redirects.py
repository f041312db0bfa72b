"""Which answers are redirects to follow (FOLLOWED_STATI: 300 too, as curl -L and wget follow
it), and what a followed redirect sends (docs/choices.md): only a POST becomes a GET on a 301
or 302, as browsers (the Fetch standard) and curl make it; a 303 makes a GET of anything but a
HEAD; any other method is sent on as it is, with its body. requests made a GET of every method on a
302, and sent a PUT redirected by 301 on with no body: an empty PUT can empty a resource, and
either way the record said ok. No Cookie goes over http once a redirect chain has been on
https (SPEC 2.2); a -b cookie goes on every hop to its own host and port, a Cookie header
given on every hop to its URL's scheme, host and port, with the cookies the chain's answers
set (GivenCookie), and so does an Authorization header given (GivenAuthorization). fetcher's own
conditions go to the URL whose body they are of only (a strong ETag's to its path under
another query too: state.prior.reach)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from urllib.parse import urlsplit

from requests import PreparedRequest, Response
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, get_cookie_header
from requests.models import REDIRECT_STATI

from fetcher.http.cookies import AnswerRulesJar, BoundedCookieJar, HostOnlyPolicy
from fetcher.http.request import Asked
from fetcher.state.prior import Reach, reach

# The headers of a request's body, which requests drops with it on any redirect but 307 and 308.
BODY_HEADERS = ("Content-Length", "Content-Type", "Transfer-Encoding")

# The statuses whose Location is followed: requests' (301, 302, 303, 307, 308) and 300 Multiple
# Choices, which curl -L and wget follow too; without it a 300 was the record (ok, no file, no
# --failed line) where they saved the file its Location names (s26 h4 4). A 300 keeps the
# method and body, as a 307 does (redirect_method; curl changes a POST on 301-303 only).
FOLLOWED_STATI = frozenset((300, *REDIRECT_STATI))

# The redirects whose method is kept (but for a POST on 301 and 302) and whose body requests
# drops all the same: restore_body puts it back.
BODY_DROPPED = frozenset((300, 301, 302))


def is_followed(response: Response) -> bool:
    """Whether response is a redirect to follow (unless --no-follow): a FOLLOWED_STATI with a
    Location. The one test of it, in place of requests' Response.is_redirect (no 300), so that
    everything a redirect does (--max-redirects, the record's count, the hop's host pause and
    conditions, the session's lean path) does it for a 300 too."""
    return response.status_code in FOLLOWED_STATI and "location" in response.headers


def redirect_location(response: Response) -> str | None:
    """requests' get_redirect_target by is_followed: the Location of a redirect to follow, its
    bytes read as UTF-8 (UnicodeDecodeError when they are not), else None."""
    if not is_followed(response):
        return None
    location: str = response.headers["location"]
    return location.encode("latin1").decode("utf8")  # urllib3 read the bytes as Latin-1


def redirect_method(method: str | None, status: int) -> str:
    """The method of the request that follows a redirect of status (of a GET: method None)."""
    method = method or "GET"
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method


def restore_body(prepared: PreparedRequest, response: Response) -> None:
    """Put back the body (and its headers) that requests dropped from prepared, the request
    following response, when the redirect kept the method: a 300, or a 301 or 302 of anything
    but a POST. (307 and 308 keep it in requests already; a 303 sends none.)"""
    previous = response.request
    if response.status_code not in BODY_DROPPED or previous.body is None:
        return
    if prepared.method != previous.method:
        return
    prepared.body = previous.body
    for name in BODY_HEADERS:
        if name in previous.headers:
            prepared.headers[name] = previous.headers[name]


def without_cookie_off_tls(prepared: PreparedRequest, chain_was_on_tls: bool) -> None:
    """Take the Cookie header off prepared, a redirect's hop, when it goes over http and an
    earlier hop of its chain (chain_was_on_tls) went over https: requests builds every hop's
    Cookie again from the jar, whose cookies not marked Secure went to the same host in clear
    text, where SPEC 2.2 forwards no credential from https to http (curl and browsers send
    them, by RFC 6265). The previous hop alone is not enough: on https -> http -> http the
    second http hop had the https answer's cookie again. Whoever set them, the jar, -b, the -c
    file or an http answer of the chain, none goes; a later hop back to https has them again.
    A separate http URL of the run is no hop of a chain: it gets the jar's, as RFC 6265 says."""
    if chain_was_on_tls and (prepared.url or "").lower().startswith("http:"):
        prepared.headers.pop("Cookie", None)


def with_given_cookies(prepared: PreparedRequest, given: CookieJar | None) -> None:
    """Put the -b cookies (given: host_cookies', bound to their URL's host and port) back in
    prepared, a redirect's hop, when they go to its host and port, and build its Cookie again.
    requests' resolve_redirects reads the redirect's Set-Cookie into the hop's jar and merges
    the session's jar over it: a server's cookie of the same name, host and path, set by this
    answer or an earlier one, took the -b cookie's place (s25 h4 5), where usage.md sends it
    to its URL's host and port and curl -L -b sends it on every hop. The jar's policy says
    whether this hop is theirs: a hop to another host or port still gets none of them."""
    jar = getattr(prepared, "_cookies", None)  # requests' jar of the hop (_prepare's kind)
    if not given or not isinstance(jar, RequestsCookieJar):
        return
    probe = AnswerRulesJar(jar.get_policy())  # which spells an IPv6 host as the jar does
    for cookie in given:
        probe.set_cookie(cookie)
    built = prepared.headers.pop("Cookie", None)  # a jar adds one only where none is
    if get_cookie_header(probe, prepared):  # type: ignore[no-untyped-call]
        for cookie in given:
            jar.set_cookie(cookie)
        prepared.prepare_cookies(jar)
    elif built is not None:
        prepared.headers["Cookie"] = built


# A URL's scheme, host and port (the scheme's own when none is written); None for a URL that
# has no host or whose port cannot be read.
Origin = tuple[str, str, int] | None


def origin_of(url: str) -> Origin:
    """url's Origin, as a Cookie header given for it compares the hops' URLs."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname:
        return None
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


@dataclass(frozen=True, slots=True)
class GivenCookie:
    """A Cookie header the request was given (-H, a line's headers), the Origin of the URL it
    was given for, and the cookies the answers of its chain set (received). requests drops
    Cookie on every hop and builds it again from the jar, so a login redirect to the same host
    lost it and the login page was saved ok (s26 h4 1). It goes back on each hop to that
    origin, as -H Authorization stays on such hops and curl -L and wget send it, with what the
    chain received (place); never to another host, port or scheme, where the one given names
    no session (hop_credentials then takes it off http hops once the chain was on https)."""

    value: str
    origin: Origin
    received: CookieJar
    deleted: set[str] = field(default_factory=set)  # names the chain's answers deleted

    @classmethod
    def of(cls, prepared: PreparedRequest, jar: CookieJar) -> GivenCookie | None:
        """The Cookie header of prepared, a request's first hop, before requests adds the
        jar's (which it adds only where none is given); None when none was given. jar is the
        session's, whose rules the received cookies are read by."""
        value = prepared.headers.get("Cookie")
        if value is None:
            return None
        received = jar.for_request() if isinstance(jar, BoundedCookieJar) else BoundedCookieJar()
        return cls(value, origin_of(prepared.url or ""), received)

    def receive(self, answer: Response, hop: PreparedRequest) -> None:
        """Read the Set-Cookie of answer, a redirect of the chain followed to hop, into
        received, keeping there only what hop's jar holds alike: requests read the answer into
        that jar, which knows the Secure cookies the session held before, and refuses an http
        answer's cookie of their name (s25 r8 1); an empty jar of the chain's own knows none.
        The names it deletes on the given origin's host are remembered (deleted): the jar only
        drops its own entry, and the given pair of that name came back (s26 r5 2)."""
        hop_jar = getattr(hop, "_cookies", None)  # requests' jar of the hop (_prepare's kind)
        if self.origin is not None:
            self.deleted.update(deleted_names(answer, self.origin[1], hop_jar))
        extract_cookies_to_jar(self.received, answer.request, answer.raw)  # type: ignore[no-untyped-call]
        held = {(c.domain, c.path, c.name, c.value) for c in hop_jar or ()}
        for cookie in list(self.received):
            if (cookie.domain, cookie.path, cookie.name, cookie.value) not in held:
                self.received.clear(cookie.domain, cookie.path, cookie.name)

    def place(self, prepared: PreparedRequest) -> None:
        """Send it on prepared, a hop to its origin, in place of the Cookie requests built from
        the jar: the first request's rule (usage.md), neither -b's cookies nor any the jar held
        before added, but with those the chain's answers set for the hop (by the jar's rules),
        over the given ones of the same name: a redirect to itself that rotates the session
        (session=new) must not be sent the stale one (s26 r3 3), nor one the chain deleted
        (s26 r5 2). A hop elsewhere keeps the jar's; a hop left with no pair sends no Cookie."""
        if self.origin is not None and origin_of(prepared.url or "") == self.origin:
            prepared.headers.pop("Cookie", None)  # a jar adds one only where none is
            received = get_cookie_header(self.received, prepared)  # type: ignore[no-untyped-call]
            joined = joined_cookies(self.value, received, self.deleted)
            if joined:
                prepared.headers["Cookie"] = joined


@dataclass(frozen=True, slots=True)
class GivenAuthorization:
    """An Authorization header the request was given (-H, a line's headers), and the Origin of
    the URL it was given for. requests' rebuild_auth compares each hop with the one before it
    only: on A -> C -> A (an SSO round trip) the header was dropped at C and never came back,
    and the record was A's 401, where curl -L sends a -H Authorization again to the host it was
    given for (s28 t5 2). It follows a given Cookie's rule (GivenCookie): on every hop to its
    origin, never to another host, port or scheme (requests kept it from http:80 to https:443),
    nor over http once the chain was on https (SPEC 2.2). -u's, .netrc's and a URL's keep
    requests' rule: never again once the chain left their host (curl's -u neither goes on the
    http:80 to https:443 upgrade, which requests' rule allows)."""

    value: str
    origin: Origin

    @classmethod
    def of(cls, prepared: PreparedRequest, removed: frozenset[str]) -> GivenAuthorization | None:
        """The Authorization header of prepared, a request's first hop, before -u, .netrc or
        its URL's user:password@ are added (which are added only where none is given); None
        when none was given, or removed (-H 'Authorization:', whose name is in removed)."""
        value = prepared.headers.get("Authorization")
        if value is None or "authorization" in removed:
            return None
        return cls(value, origin_of(prepared.url or ""))

    def place(self, prepared: PreparedRequest, chain_was_on_tls: bool) -> None:
        """Put it on prepared, a redirect's hop, when the hop goes to its origin (and not over
        http after https); take any Authorization off a hop elsewhere: none of the request's
        own credentials goes there, and requests' rule may have kept the last hop's."""
        url = prepared.url or ""
        home = self.origin is not None and origin_of(url) == self.origin
        if home and not (chain_was_on_tls and url.lower().startswith("http:")):
            prepared.headers["Authorization"] = self.value
        else:
            prepared.headers.pop("Authorization", None)


def joined_cookies(given: str, received: str | None, deleted: set[str] | None = None) -> str:
    """A Cookie header of given's pairs and received's after them, a name in received taking
    the place of given's pairs of that name (a server reads one value of a cookie), and given's
    pairs of a name in deleted left out (its server ended that cookie); given as it was when
    nothing was received nor deleted."""
    if not received and not deleted:
        return given
    names = {_cookie_name(pair) for pair in (received or "").split(";")} | (deleted or set())
    kept = [pair.strip() for pair in given.split(";") if pair.strip()]
    ours = [received] if received else []
    return "; ".join([*(pair for pair in kept if _cookie_name(pair) not in names), *ours])


def deleted_names(answer: Response, host: str, jar: CookieJar | None = None) -> set[str]:
    """The cookie names answer's Set-Cookie headers delete for host, as jar (the hop's, which
    read answer) reads them: a _DeletionProbe of its rules reads the answer, so every
    attribute is read by the jar's own code (the first of a repeated Expires or Domain, the
    last Max-Age, over any Expires; a cookie it cannot read deletes nothing), and an http
    answer deletes no name jar keeps for a Secure cookie. A dict of the attributes kept the
    last Expires where the jar keeps the first, and the jar deleted s=new while the given
    s=old was sent again (s27 r1 3). Only an answer from host (cookies ignore ports and
    schemes) speaks for host's cookies; the Path is not weighed, for the given header has
    none."""
    if (urlsplit(answer.url or "").hostname or "") != host.lower():
        return set()
    probe = _DeletionProbe(jar if isinstance(jar, AnswerRulesJar) else None)
    extract_cookies_to_jar(probe, answer.request, answer.raw)  # type: ignore[no-untyped-call]
    return probe.deleted


class _DeletionProbe(AnswerRulesJar):
    """An empty jar of rules's rules (the hop's jar; None: a bare session's) that notes the
    names of the cookies an answer read into it deletes: http.cookiejar carries out an expired
    Set-Cookie (a Max-Age of 0 or less, a past Expires) by clear, which AnswerRulesJar allows
    for a domain the answering host may set cookies for (may_delete) only, so each name noted
    is one host's cookie; and, from an http answer, not one of a Secure cookie rules knows
    (guards_secure: its own and the run's). Empty, it knew none, and dropped the given pair of
    a name whose deletion the hop's jar refused (s27 r2 5)."""

    def __init__(self, rules: AnswerRulesJar | None = None) -> None:
        super().__init__(rules.get_policy() if rules is not None else HostOnlyPolicy())
        self._rules = rules
        self.deleted: set[str] = set()

    def _known_secure(self, domain: str, path: str, name: str) -> bool:
        """rules's Secure cookies, held or known to the run, not this empty jar's."""
        return self._rules is not None and self._rules.guards_secure(domain, path, name)

    def clear(
        self, domain: str | None = None, path: str | None = None, name: str | None = None
    ) -> None:
        if domain is not None and name is not None and self.may_delete(domain, path, name):
            self.deleted.add(name)
        super().clear(domain, path, name)


def _cookie_name(pair: str) -> str:
    """The name of a Cookie header's 'name=value' pair (cookie names are case-sensitive)."""
    return pair.partition("=")[0].strip()


@dataclass(frozen=True, slots=True)
class Conditions:
    """fetcher's own conditions of a request (EffectiveRequest.conditions: --state's
    If-None-Match and If-Modified-Since; with resumes, --continue's Range and If-Range), each
    with the URL whose body they are of (groups). Validators belong to the resource that sent
    them (RFC 9110 8.8): requests sent them on to every hop, and a permalink moved to an older
    file had it answer 304 to the newer one's date, the newer file kept for good as unchanged
    (s24 h5 1). A hop to another URL asks for its whole body (a signed target's, its strong
    ETag's only: place); the one to their URL, whichever it is, gets them back. Each group
    goes by its own URL: --continue's retry in the run sent the state's, of another URL than
    the partial's, to every hop, and took a stale mirror's 304 to them (s25 r5 1)."""

    groups: tuple[tuple[Mapping[str, str], str], ...] = ()

    @classmethod
    def of(cls, prepared: PreparedRequest, *asked: Asked) -> Conditions:
        """The conditions asked (names, and their URL; None: its own) found in prepared, the
        request's first hop."""
        groups = []
        for names, url in asked:
            found = {name: prepared.headers[name] for name in names if name in prepared.headers}
            if found:
                groups.append((found, url or prepared.url or ""))
        return cls(tuple(groups)) if groups else NO_CONDITIONS

    def place(self, prepared: PreparedRequest) -> None:
        """Put on prepared, a hop, those of each group its URL's reach allows (prior.reach,
        the one rule): all on a hop to their URL; on one to its path under another query (a
        signed target: s24 r11 1, 2) only those a strong ETag makes (If-None-Match, If-Range
        with Range), whose 304 counts only with that ETag (fetch.names_another_version), a
        206 only with the file's own (Resumer.restarts); none on a hop to any other URL, whose
        ETag may be another file's too (s25 r2 2, 3, 6). A date means nothing elsewhere."""
        for headers, url in self.groups:
            travelling = {
                Reach.OWN: frozenset(headers),
                Reach.SIGNED: _strong_ones(headers),
                Reach.OTHER: frozenset(),
            }[reach(prepared.url, url)]
            for name in headers:
                if name in travelling:
                    prepared.headers[name] = headers[name]
                else:
                    prepared.headers.pop(name, None)


def _strong_ones(headers: Mapping[str, str]) -> frozenset[str]:
    """The names in headers whose conditions hold on the same path under another query: a
    strong If-None-Match, and a strong If-Range with its Range."""
    names = set()
    if headers.get("If-None-Match", "W/").lstrip().startswith('"'):
        names.add("If-None-Match")
    if headers.get("If-Range", "").lstrip().startswith('"') and "Range" in headers:
        names.update(("If-Range", "Range"))
    return frozenset(names)


NO_CONDITIONS = Conditions()
