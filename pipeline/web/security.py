"""Who may use the review app, and what every request must carry.

Access
  Each start draws a random token (``secrets.token_urlsafe``). The first request
  must carry it in the URL (``?token=...``): that opens a session, held in an
  HttpOnly, SameSite=Strict cookie, and the token is taken out of the address bar
  by a redirect. A request with neither a valid token nor a session cookie gets a
  403 page. Sessions live in memory only: a new start needs the new URL.
CSRF
  Every form carries the session's CSRF token in a hidden field; a POST without it,
  or with another one, is refused (403). A POST whose Origin is another site is
  refused too, before its body is read.
Forms
  A form may hold no file, at most :data:`MAX_FORM_FIELDS` fields and at most
  :data:`MAX_FORM_BYTES` bytes; its length must be declared (``Content-Length``, as
  every browser sends it), so an endless body is refused before it is read.
Headers
  ``Content-Security-Policy: default-src 'self'`` (no inline script or style, no
  outside resource), no referrer to other sites, no framing, no caching, on every
  response (the 403 pages included).

Everything here is about the request, not the review: :class:`Guard` sits in front of
the Starlette app and knows nothing of pages; :mod:`.routes` calls :func:`csrf_ok`,
:func:`read_form` and :func:`local_target`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import FormData, MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

CSP = ("default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
       "object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send "Origin: null"
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: sessions kept at once; past it the least recently seen one is dropped, so a
#: client that keeps opening sessions cannot grow the server's memory without end
MAX_SESSIONS = 200
#: the largest form: moving segments sends a box and two version fields per segment
#: listed, and a theme page lists all of its segments
MAX_FORM_FIELDS = 20000
#: The largest form body read. The largest form of the app, a page of decisions with
#: every segment of a large theme, is a few hundred kilobytes.
MAX_FORM_BYTES = 16 * 1024 * 1024



#: the form fields a person types into (names, definitions, core ideas, comments): a
#: refusal that saved nothing (the store cannot be opened, the server was started
#: again) gives them back, not the form
TYPED_FIELDS = {"new_name": "Name", "definition": "Definition", "core_idea": "Core idea",
                "category_name": "Name of the category",
                "category_definition": "Definition of the category",
                "comment": "Comment", "text": "Comment"}


def typed_fields(form) -> list[tuple[str, str]]:
    """(label, text) of each field of ``form`` a person typed into and filled in."""
    return [(label, str(form.get(k, ""))) for k, label in TYPED_FIELDS.items()
            if form is not None and str(form.get(k, "")).strip()]


@dataclass
class Session:
    sid: str
    csrf: str
    who: str | None = None
    flash: list[tuple[str, str]] = field(default_factory=list)
    seen: float = field(default_factory=time.monotonic)


class Access:
    """The access token of one start of the app, and the sessions it opened."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        # one cookie name per token: a new start does not pick up an old start's cookie
        self.cookie = "consensa_" + hashlib.sha256(self.token.encode()).hexdigest()[:12]
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def url(self, host: str, port: int) -> str:
        """The address to open: it holds the token."""
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/?token={self.token}"

    def token_ok(self, sent: str) -> bool:
        return hmac.compare_digest(sent.encode(), self.token.encode())

    def new_session(self) -> Session:
        with self._lock:
            if len(self.sessions) >= MAX_SESSIONS:
                oldest = min(self.sessions.values(), key=lambda s: s.seen)
                del self.sessions[oldest.sid]
            s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
            self.sessions[s.sid] = s
            return s

    def session_of(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            s = self.sessions.get(sid)
            if s is not None:
                s.seen = time.monotonic()
            return s


def csrf_ok(session: Session, sent: str) -> bool:
    """Whether a form carries its session's CSRF token (compared in constant time)."""
    return bool(sent) and hmac.compare_digest(sent.encode(), session.csrf.encode())


class FormRefused(Exception):
    """A form body the app does not read (status, message, what to do)."""

    def __init__(self, status: int, message: str, hint: str) -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


async def read_form(request: Request) -> FormData:
    """The request's form, within the limits above (a file part is refused)."""
    declared = request.headers.get("content-length")
    if declared is None:
        raise FormRefused(411, "This form was sent without its length, so it was not read.",
                          "Submit the form from the app's page in a browser.")
    try:
        size = int(declared)
    except ValueError:
        raise FormRefused(400, f"This form's length {declared[:40]!r} is not a number.",
                          "Submit the form from the app's page in a browser.") from None
    if size > MAX_FORM_BYTES:
        raise FormRefused(413, f"This form is {size:,} bytes; at most {MAX_FORM_BYTES:,} are "
                          "read, so it was not read.",
                          "Nothing was saved. Submit fewer items at once.")
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


def same_origin(request: Request) -> bool:
    """A POST without Origin (an older browser, a script) or from this very host.

    ``Origin: null`` (a sandboxed frame, a ``data:`` page) is another site."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def local_target(target: object, default: str = "/") -> str:
    """A local address to return to after a form (never another site): a form's
    ``back`` field is the client's to set, so it cannot be trusted to stay here."""
    text = str(target or default)
    parts = urlsplit(text)
    # "//host" and "/\host" are another site to a browser ("\" reads as "/")
    if parts.scheme or parts.netloc or not text.startswith("/") or text[1:2] in ("/", "\\"):
        return default
    return text


class Guard:
    """Token and session check in front of the app, and the security headers on every
    response (the 403 pages included).

    ``forbidden(message, hint)`` renders the 403 page: the app's, so it looks like the
    rest of the review, but it is given nothing of the review to show.
    """

    def __init__(self, app, access: Access,
                 forbidden: Callable[[str, str, list[tuple[str, str]]], str]) -> None:
        self.app = app
        self.access = access
        self.forbidden = forbidden

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers[k] = v
            await send(message)

        access = self.access
        request = Request(scope)
        token = request.query_params.get("token")
        if token is not None:
            if access.token_ok(token):
                session = access.session_of(request.cookies.get(access.cookie)) \
                    or access.new_session()
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                # the path as asked, but never "//other.site": a link with the token
                # must not send the judge elsewhere
                target = local_target(request.url.path + (f"?{urlencode(rest)}" if rest else ""))
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(access.cookie, session.sid, httponly=True,
                                    samesite="strict", path="/")
                await response(scope, receive, send_with_headers)
                return
            await self._refuse(scope, receive, send_with_headers,
                               "This link's access token is not the one of this server.",
                               "Use the address `consensa serve` printed when it started "
                               "(a new start prints a new one).")
            return
        session = access.session_of(request.cookies.get(access.cookie))
        if session is None and request.method == "POST" and same_origin(request):
            # a form sent from a page this server did not give: most often `consensa
            # serve` was started again (a new start forgets the sessions); the person's
            # words are given back, as every other refusal gives them
            try:
                form = await Request(scope, receive).form()
            except Exception:           # a body that is no form: nothing typed to give
                form = None
            await self._refuse(
                scope, receive, send_with_headers,
                "Not saved: this server does not know the page the form came from. "
                "`consensa serve` was most likely started again since the page was "
                "opened (a new start forgets who was signed in). Nothing was saved.",
                "Open the address it printed when it started (start it with --port to "
                "keep the same address), sign in, and send the form again.",
                typed=typed_fields(form))
            return
        if session is None:
            await self._refuse(scope, receive, send_with_headers,
                               "This review can be opened only with the address "
                               "`consensa serve` printed (it holds an access token).",
                               "Open that address in this browser.")
            return
        if request.method == "POST" and not same_origin(request):
            await self._refuse(scope, receive, send_with_headers,
                               "A form from another site was refused.", "")
            return
        if session.who is None and request.method == "GET" and not (
                request.url.path in ("/login",) or request.url.path.startswith("/static/")):
            await RedirectResponse("/login", status_code=303)(scope, receive, send_with_headers)
            return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope, receive, send, message: str, hint: str,
                      typed: list[tuple[str, str]] = ()) -> None:
        await HTMLResponse(self.forbidden(message, hint, list(typed)),
                           status_code=403)(scope, receive, send)
