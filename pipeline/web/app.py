"""The review web app: the judges' consensus meeting over ``RUN/review/decisions.sqlite``.

Every read and write goes through :class:`pipeline.review.store.ReviewStore`, the
same store (and the same validation) as the workbooks, so nothing is kept twice.

Access
  Each start draws a random token (``secrets.token_urlsafe``). The first request
  must carry it in the URL (``?token=...``): that opens a session, held in an
  HttpOnly, SameSite=Strict cookie, and the token is taken out of the address bar
  by a redirect. A request with neither a valid token nor a session cookie gets a
  403 page. Sessions live in memory only: a new start needs the new URL.
CSRF
  Every form carries the session's CSRF token in a hidden field; a POST without it,
  or with another one, is refused (403). A POST whose Origin is another site is
  refused too.
Who
  At the first visit a person picks their name from the review's panel (judges and
  auditors). Judges record positions and consensus decisions; auditors comment.
Two people at once
  Every form carries the version of what it changes (see
  :meth:`ReviewStore.item_version`); a save based on a state that has changed
  since is refused with 409 and a message saying who changed what, and the page
  shows the current state with the refused entries kept in the form.
Headers
  ``Content-Security-Policy: default-src 'self'`` (no inline script or style, no
  outside resource), no referrer to other sites, no framing, no caching.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import re
import secrets
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ConsensaError
from ..review.agreement import ItemStatus, review_status
from ..review.model import (
    DOMAIN_DECISIONS,
    SEGMENT_DECISIONS,
    THEME_DECISIONS,
    Decision,
    ReviewError,
    RunItems,
    _norm_id,
    domain_item,
    load_run,
    segment_item,
    theme_item,
)
from ..review.store import ReviewStore, StaleError
from .context import Context

HERE = Path(__file__).resolve().parent
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
MAX_SESSIONS = 200
MAX_SEARCH_RESULTS = 200
#: the files the export page offers for download: folder -> allowed suffixes
DOWNLOADS = {"review": (".yaml", ".md", ".csv", ".qdc"), "export": (".qdc", ".qdpx")}
STATE_WORDS = {"agreed": "agreed", "resolved": "resolved", "disputed": "disputed",
               "open": "not yet judged"}


@dataclass
class Session:
    sid: str
    csrf: str
    who: str | None = None
    flash: list[tuple[str, str]] = field(default_factory=list)
    seen: float = field(default_factory=time.monotonic)


class Refused(Exception):
    """A request the app answers with an error page (status, message)."""

    def __init__(self, status: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def item_url(item: str) -> str:
    kind, _, ident = item.partition(":")
    return f"/{kind}/{quote(ident, safe='')}"


def _when(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


class ReviewApp:
    """One run's review, served. ``asgi`` is the application to give to a server."""

    def __init__(self, run_folder: str | Path, token: str | None = None) -> None:
        self.run: RunItems = load_run(run_folder)
        with self.store():  # refuses a run without a review (with what to do)
            pass
        self.token = token or secrets.token_urlsafe(32)
        self.cookie = "consensa_" + hashlib.sha256(self.token.encode()).hexdigest()[:12]
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.context = Context(self.run)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["when"] = _when
        self.env.filters["item_url"] = item_url
        self.env.globals.update(item_url=item_url, state_words=STATE_WORDS, say=self.say)
        routes = [
            Route("/", self._wrap(self.overview)),
            Route("/login", self._wrap(self.login, needs_person=False), methods=["GET", "POST"]),
            Route("/logout", self._wrap(self.logout, needs_person=False), methods=["POST"]),
            Route("/theme/{ident}", self._wrap(self.theme_page)),
            Route("/domain/{ident}", self._wrap(self.domain_page)),
            Route("/segment/{ident}", self._wrap(self.segment_page)),
            Route("/decide", self._wrap(self.decide), methods=["POST"]),
            Route("/move", self._wrap(self.move), methods=["POST"]),
            Route("/comment", self._wrap(self.comment), methods=["POST"]),
            Route("/undo", self._wrap(self.undo), methods=["POST"]),
            Route("/search", self._wrap(self.search)),
            Route("/log", self._wrap(self.log)),
            Route("/export", self._wrap(self.export_page)),
            Route("/export/codebook", self._wrap(self.export_codebook), methods=["POST"]),
            Route("/export/refi/{kind}", self._wrap(self.export_refi), methods=["POST"]),
            Route("/download/{folder}/{name}", self._wrap(self.download)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.app = Starlette(routes=routes, exception_handlers={
            404: self._not_found, 405: self._not_found, Exception: self._crash})
        self.asgi = Guard(self.app, self)

    # --- plumbing ---------------------------------------------------------------------
    def say(self, d: Decision | None) -> str:
        """A decision in words, with the names of the themes and domains it points to."""
        if d is None:
            return ""

        def named(m: re.Match) -> str:
            kind, ident = m.group(1), m.group(2)
            name = self.run.theme_name(ident) if kind == "theme" else self.run.domain_name(ident)
            return f'{kind} {ident} "{name}"' if name else m.group(0)

        return re.sub(r"\b(theme|domain) (\d+)\b", named, d.describe())

    def store(self) -> ReviewStore:
        return ReviewStore(self.run)

    def url(self, host: str, port: int) -> str:
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/?token={self.token}"

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

    def _wrap(self, fn, needs_person: bool = True):
        async def endpoint(request: Request) -> Response:
            session: Session = request.state.session
            form = None
            if request.method == "POST":
                form = await request.form(max_files=0, max_fields=20000)
                sent = str(form.get("csrf", ""))
                if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                    return self.error(request, Refused(
                        403, "This form was refused: its security token (CSRF) is missing or "
                        "is not the one of your session.",
                        "Open the page again from the app and submit the form there."))
            if needs_person and not self.person(session):
                return RedirectResponse("/login", status_code=303)
            try:
                return await run_in_threadpool(fn, request, form)
            except Refused as exc:
                return self.error(request, exc)
        return endpoint

    def person(self, session: Session) -> tuple[str, str] | None:
        """(name, role) of the session's person, if they are (still) on the panel."""
        if session.who is None:
            return None
        with self.store() as store:
            role = store.panel().get(session.who)
        if role is None:
            session.who = None
            return None
        return session.who, role

    def render(self, request: Request, template: str, http_status: int = 200,
               **ctx) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        who = role = None
        if session is not None and session.who:
            who = session.who
        with self.store() as store:
            panel = store.panel()
            rnd = store.round
        role = panel.get(who) if who else None
        flash = []
        if session is not None and http_status < 400:
            flash, session.flash = session.flash, []
        html = self.env.get_template(template).render(
            run=self.run, round=rnd, who=who, role=role, panel=panel,
            csrf=session.csrf if session else "", flash=flash, path=request.url.path, **ctx)
        return HTMLResponse(html, status_code=http_status)

    def error(self, request: Request, exc: Refused, **ctx) -> HTMLResponse:
        return self.render(request, "error.html", http_status=exc.status, code=exc.status,
                           message=exc.message,
                           hint=exc.hint, **ctx)

    async def _not_found(self, request: Request, exc: HTTPException) -> Response:
        status = getattr(exc, "status_code", 404)
        if not hasattr(request.state, "session"):
            return HTMLResponse("Not found", status_code=status)
        return self.error(request, Refused(status, "There is no such page." if status == 404
                                           else "This page does not take that kind of request."))

    async def _crash(self, request: Request, exc: Exception) -> Response:
        traceback.print_exception(exc, file=sys.stderr)
        return HTMLResponse("<!DOCTYPE html><title>Error</title><h1>Something went wrong</h1>"
                            "<p>The error was printed where <code>consensa serve</code> runs. "
                            "Nothing was saved by this request.</p>", status_code=500)

    def flash(self, request: Request, text: str, kind: str = "ok") -> None:
        request.state.session.flash.append((kind, text))

    def me(self, request: Request, need: str | None = None) -> tuple[str, str]:
        p = self.person(request.state.session)
        if p is None:
            raise Refused(403, "Choose who you are first.")
        if need and p[1] != need:
            raise Refused(403, f"Only {'a judge' if need == 'judge' else 'an auditor'} can do "
                          f"this; you are {p[0]} ({p[1]}).")
        return p

    def back(self, form, default: str = "/") -> str:
        """A local address to return to (never another site)."""
        target = str((form or {}).get("back") or default)
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
            return default
        return target

    def known(self, item: str) -> bool:
        kind, _, ident = item.partition(":")
        if kind == "theme":
            return ident in self.run.theme_ids
        if kind == "domain":
            return ident in self.run.domain_ids
        if kind == "segment":
            return ident in self.run.segment_ids
        return False

    # --- who are you ----------------------------------------------------------------
    def login(self, request: Request, form) -> Response:
        with self.store() as store:
            panel = store.panel()
        if form is not None:
            name = str(form.get("name", ""))
            if name not in panel:
                raise Refused(400, f"{name!r} is not on this review's panel.")
            request.state.session.who = name
            return RedirectResponse("/", status_code=303)
        return self.render(request, "login.html", people=panel)

    def logout(self, request: Request, form) -> Response:
        request.state.session.who = None
        return RedirectResponse("/login", status_code=303)

    # --- overview -----------------------------------------------------------------------
    def overview(self, request: Request, form) -> Response:
        q = request.query_params
        f = {k: q.get(k, "") for k in ("status", "domain", "judge", "judged")}
        if ":" in f["judge"]:  # "ana:no" (waiting for ana), "ana:yes" (judged by ana)
            f["judge"], _, f["judged"] = f["judge"].rpartition(":")
        with self.store() as store:
            st = review_status(store)
            undo = store.undo_target()
        items = {i.item: i for i in st.items}

        def judged(i: ItemStatus, j: str) -> bool:
            d = i.positions.get(j)
            return d is not None and d.source != "left alone"

        def keep(i: ItemStatus) -> bool:
            if f["status"] == "pending" and i.state in ("agreed", "resolved"):
                return False
            if f["status"] and f["status"] != "pending" and i.state != f["status"]:
                return False
            if f["judge"] in st.judges:
                if f["judged"] == "yes" and not judged(i, f["judge"]):
                    return False
                if f["judged"] != "yes" and judged(i, f["judge"]):
                    return False
            return True

        run = self.run
        domains = []
        for d in run.domains.sort_values("domain_id").itertuples():
            if f["domain"] and f["domain"] != str(int(d.domain_id)):
                continue
            themes = []
            for t in run.themes[run.themes["domain_id"] == d.domain_id].sort_values(
                    ["n_cases", "n_segments"], ascending=False).itertuples():
                i = items[theme_item(t.theme_id)]
                if keep(i):
                    themes.append({"t": t, "status": i})
            ds = items[domain_item(d.domain_id)]
            if themes or keep(ds):
                domains.append({"d": d, "status": ds, "themes": themes, "shown": keep(ds)})
        seg_items = [i for i in st.items if i.kind == "segment" and keep(i)]
        counts = {s: sum(1 for i in st.items if i.state == s) for s in STATE_WORDS}
        return self.render(request, "overview.html", st=st, domains=domains, seg_items=seg_items,
                           counts=counts, filters=f, undo=undo,
                           n_unassigned=int((run.segments["theme"] < 0).sum()),
                           filtered=any(f.values()))

    # --- item pages -----------------------------------------------------------------------
    def _item_state(self, item: str, who: str | None):
        with self.store() as store:
            st = review_status(store)
            versions = store.item_versions()
            mine = store.item_versions(judge=who) if who else {}
            undo = store.undo_target()
            log = [r for r in store.audit_log() if r["item"] == item][-10:]
        status = next((i for i in st.items if i.item == item), None)
        if status is None:  # a segment nobody touched: not an item of the status yet
            status = ItemStatus(item, self.run.label(item), "untouched",
                                {j: Decision(item, "keep", source="left alone")
                                 for j in st.judges})
        return st, status, versions, mine, undo, log

    def _prefill(self, request: Request, status: ItemStatus, who: str | None,
                 draft: Decision | None) -> tuple[Decision, str]:
        """The decision the form starts from, and where it comes from."""
        if draft is not None:
            return draft, "your refused entries"
        source = request.query_params.get("from", "")
        if source in status.positions and status.positions[source].source != "left alone":
            return status.positions[source], f"{source}'s position"
        if source == "consensus" and status.consensus is not None:
            return status.consensus, "the consensus"
        if status.consensus is not None:
            return status.consensus, "the consensus"
        if who in status.positions and status.positions[who].source != "left alone":
            return status.positions[who], "your position"
        default = "keep" if status.kind == "segment" else "accept"
        return Decision(status.item, default), "nothing yet"

    def _page_common(self, request: Request, item: str, error: Exception | None,
                     draft: Decision | None) -> dict:
        who = request.state.session.who
        st, status, versions, mine, undo, log = self._item_state(item, who)
        prefill, prefill_from = self._prefill(request, status, who, draft)
        err = None
        if error is not None:
            err = {"stale": isinstance(error, StaleError),
                   "message": getattr(error, "reason", str(error)),
                   "hint": getattr(error, "hint", "")}
        return {"st": st, "status": status, "item": item, "v_item": versions.get(item, 0),
                "v_mine": mine.get(item, 0), "versions": versions, "mine": mine,
                "prefill": prefill, "prefill_from": prefill_from, "err": err, "undo": undo,
                "item_log": log,
                "theme_choices": [(str(int(t.theme_id)), t.name) for t in
                                  self.run.themes.sort_values("theme_id").itertuples()],
                "domain_choices": [(str(int(d.domain_id)), d.name) for d in
                                   self.run.domains.sort_values("domain_id").itertuples()]}

    def _quotes(self, rows, ctx: dict, before: int = 2, after: int = 2) -> list[dict]:
        items = {i.item: i for i in ctx["st"].items}
        out = []
        for r in rows.itertuples():
            sid = str(r.segment_id)
            it = segment_item(sid)
            out.append({"id": sid, "case": r.case_id, "speaker": r.speaker, "text": r.text,
                        "question": r.question, "theme": int(r.theme),
                        "theme_name": r.theme_name, "strength": float(r.strength),
                        "context": self.context.around(sid, before, after),
                        "status": items.get(it), "vi": ctx["versions"].get(it, 0),
                        "vm": ctx["mine"].get(it, 0)})
        return out

    def theme_page(self, request: Request, form, ident: str | None = None,
                   error: Exception | None = None, draft: Decision | None = None,
                   status: int = 200) -> Response:
        ident = ident if ident is not None else request.path_params["ident"]
        if ident not in self.run.theme_ids:
            raise Refused(404, f"This run has no theme {ident!r}.")
        tid = int(ident)
        ctx = self._page_common(request, theme_item(tid), error, draft)
        run = self.run
        t = run.themes[run.themes["theme_id"] == tid].iloc[0].to_dict()
        seg = run.segments[run.segments["theme"] == tid].copy()
        quote_ids = [q.strip() for q in str(t["quote_ids"]).split(";") if q.strip()]
        rank = {q: i for i, q in enumerate(quote_ids)}
        seg["_rank"] = [rank.get(s, len(rank)) for s in seg["segment_id"]]
        seg = seg.sort_values(["_rank", "strength"], ascending=[True, False])
        quotes = self._quotes(seg, ctx)
        # segments moved into this theme by someone (positions or consensus)
        moved_in = [i for i in ctx["st"].items if i.kind == "segment" and
                    (any(d.decision == "move" and d.target == ident for d in i.positions.values())
                     or (i.consensus is not None and i.consensus.target == ident))]
        keywords = [k.strip() for k in str(t["keywords"]).split(";") if k.strip()]
        return self.render(request, "theme.html", http_status=status, t=t, tid=tid, quotes=quotes,
                           keywords=keywords, quote_ids=set(quote_ids), moved_in=moved_in,
                           domain_name=run.domain_name(t["domain_id"]),
                           decisions=THEME_DECISIONS, n_cases_total=run.n_cases,
                           context_from_sources=bool(self.context.from_sources), **ctx)

    def domain_page(self, request: Request, form, ident: str | None = None,
                    error: Exception | None = None, draft: Decision | None = None,
                    status: int = 200) -> Response:
        ident = ident if ident is not None else request.path_params["ident"]
        if ident not in self.run.domain_ids:
            raise Refused(404, f"This run has no domain {ident!r}.")
        did = int(ident)
        ctx = self._page_common(request, domain_item(did), error, draft)
        d = self.run.domains[self.run.domains["domain_id"] == did].iloc[0].to_dict()
        items = {i.item: i for i in ctx["st"].items}
        themes = [{"t": t, "status": items[theme_item(t.theme_id)]} for t in
                  self.run.themes[self.run.themes["domain_id"] == did].itertuples()]
        return self.render(request, "domain.html", http_status=status, d=d, did=did, themes=themes,
                           decisions=DOMAIN_DECISIONS, n_cases_total=self.run.n_cases, **ctx)

    def segment_page(self, request: Request, form, ident: str | None = None,
                     error: Exception | None = None, draft: Decision | None = None,
                     status: int = 200) -> Response:
        ident = ident if ident is not None else request.path_params["ident"]
        seg = self.run.segments[self.run.segments["segment_id"] == ident]
        if seg.empty:
            raise Refused(404, f"This run has no segment {ident!r}.")
        ctx = self._page_common(request, segment_item(ident), error, draft)
        quote = self._quotes(seg, ctx, before=6, after=6)[0]
        return self.render(request, "segment.html", http_status=status, q=quote, sid=ident,
                           decisions=SEGMENT_DECISIONS, **ctx)

    def item_page(self, request: Request, item: str, **kw) -> Response:
        kind, _, ident = item.partition(":")
        page = {"theme": self.theme_page, "domain": self.domain_page,
                "segment": self.segment_page}[kind]
        return page(request, None, ident=ident, **kw)

    # --- writes -------------------------------------------------------------------------
    def decision_from_form(self, item: str, form, who: str) -> Decision:
        """The form's decision. Fields that cannot go with the chosen decision are not
        sent on (the form shows them all; the labels say which goes with which)."""
        decision = str(form.get("decision", "")).strip().lower()
        kind = item.partition(":")[0]
        target = _norm_id(form.get("target", ""))
        if target.lower() == "none":
            target = "none"
        new_name = " ".join(str(form.get("new_name", "")).split())
        domain = _norm_id(form.get("domain", ""))
        segments = tuple(dict.fromkeys(str(s) for s in form.getlist("segments") if str(s)))
        if decision not in ("merge", "move"):
            target = ""
        if decision != "split":
            segments = ()
        if kind != "theme" or decision not in ("accept", "rename", "reassign"):
            domain = ""
        if decision in ("merge", "reject", "move", "keep"):
            new_name = ""
        return Decision(item=item, decision=decision, new_name=new_name, target=target,
                        domain=domain, segments=segments,
                        core_idea=str(form.get("core_idea", "")).strip(),
                        comment=str(form.get("comment", "")).strip(),
                        source=f"web form ({who})")

    @staticmethod
    def _version(form, key: str) -> int:
        try:
            return int(str(form.get(key, "0")) or 0)
        except ValueError:
            raise Refused(400, f"The form's field {key!r} is not a version number.") from None

    def decide(self, request: Request, form) -> Response:
        who, _ = self.me(request, "judge")
        item = str(form.get("item", ""))
        if not self.known(item):
            raise Refused(400, f"Unknown item {item!r}.")
        mode = str(form.get("as", ""))
        if mode not in ("position", "consensus"):
            raise Refused(400, "Say whether this is your position or the consensus.")
        d = self.decision_from_form(item, form, who)
        try:
            with self.store() as store:
                if mode == "position":
                    store.record_positions([(who, [d])], what=f"web: {who}",
                                           expect={(who, item): self._version(form, "v_mine")})
                else:
                    store.resolve([d], by=who, expect={item: self._version(form, "v_item")})
        except StaleError as exc:
            return self.item_page(request, item, error=exc, draft=d, status=409)
        except ReviewError as exc:
            return self.item_page(request, item, error=exc, draft=d, status=400)
        what = "your position" if mode == "position" else "the consensus"
        self.flash(request, f"Saved {what} on {self.run.label(item)}: {self.say(d)}.")
        return RedirectResponse(self.back(form, item_url(item)), status_code=303)

    def move(self, request: Request, form) -> Response:
        who, _ = self.me(request, "judge")
        mode = str(form.get("as", ""))
        if mode not in ("position", "consensus"):
            raise Refused(400, "Say whether this is your position or the consensus.")
        ids = list(dict.fromkeys(str(s) for s in form.getlist("segments") if str(s)))
        back = self.back(form)
        if not ids:
            raise Refused(400, "Tick the segments to move first.")
        target = _norm_id(form.get("move_to", ""))
        if not target:
            raise Refused(400, "Choose the theme to move the segments to.")
        decisions = []
        for sid in ids:
            if target == "keep":
                decisions.append(Decision(segment_item(sid), "keep", source=f"web form ({who})"))
            else:
                decisions.append(Decision(segment_item(sid), "move",
                                          target="none" if target.lower() == "none" else target,
                                          source=f"web form ({who})"))
        try:
            with self.store() as store:
                if mode == "position":
                    store.record_positions([(who, decisions)], what=f"web: {who}", expect={
                        (who, d.item): self._version(form, f"vm:{d.ident}") for d in decisions})
                else:
                    store.resolve(decisions, by=who, expect={
                        d.item: self._version(form, f"vi:{d.ident}") for d in decisions})
        except StaleError as exc:
            raise Refused(409, exc.reason, exc.hint or "") from None
        except ReviewError as exc:
            raise Refused(400, exc.reason, "Nothing was saved.") from None
        what = "your position" if mode == "position" else "the consensus"
        words = self.say(decisions[0])
        self.flash(request, f"Saved {what}: {len(decisions)} segment(s), {words}.")
        return RedirectResponse(back, status_code=303)

    def comment(self, request: Request, form) -> Response:
        who, _ = self.me(request, "auditor")
        item = str(form.get("item", ""))
        if not self.known(item):
            raise Refused(400, f"Unknown item {item!r}.")
        text = str(form.get("comment", "")).strip()
        try:
            with self.store() as store:
                store.add_audit_comment(item, who, text)
        except ReviewError as exc:
            return self.item_page(request, item, error=exc, status=400)
        self.flash(request, f"Comment on {self.run.label(item)} recorded.")
        return RedirectResponse(self.back(form, item_url(item)), status_code=303)

    def undo(self, request: Request, form) -> Response:
        who, _ = self.me(request, "judge")
        try:
            with self.store() as store:
                row = store.undo_consensus(who, expect=self._version(form, "expect"))
        except StaleError as exc:
            raise Refused(409, exc.reason, exc.hint or "") from None
        except ReviewError as exc:
            raise Refused(400, exc.reason, exc.hint or "") from None
        d = Decision.from_json(row["value"])
        self.flash(request, f"Undone: the consensus on {self.run.label(row['item'])} "
                   f"({self.say(d)}, recorded by {row['who']}).")
        return RedirectResponse(self.back(form), status_code=303)

    # --- search -------------------------------------------------------------------------
    def search(self, request: Request, form) -> Response:
        q = request.query_params
        text = " ".join(q.get("q", "").split())
        where = q.get("in", "")
        into = q.get("into", "")
        seg = self.run.segments
        hits = seg
        words = [w for w in text.casefold().split(" ") if w]
        if where == "unassigned":
            hits = hits[hits["theme"] < 0]
        elif where.lstrip("-").isdigit():
            hits = hits[hits["theme"] == int(where)]
        elif where == "outside" and into in self.run.theme_ids:
            hits = hits[hits["theme"] != int(into)]
        if words:
            hay = (hits["text"].astype(str) + " \u0000 " + hits["theme_name"].astype(str)
                   + " \u0000 " + hits["case_id"].astype(str)).str.casefold()
            mask = hay.str.contains(re.escape(words[0]), regex=True)
            for w in words[1:]:
                mask &= hay.str.contains(re.escape(w), regex=True)
            hits = hits[mask]
        elif not where:
            hits = hits.iloc[0:0]
        total = len(hits)
        who = request.state.session.who
        ctx = {"st": None, "versions": {}, "mine": {}}
        with self.store() as store:
            ctx["st"] = review_status(store)
            ctx["versions"] = store.item_versions()
            ctx["mine"] = store.item_versions(judge=who)
        results = self._quotes(hits.head(MAX_SEARCH_RESULTS), ctx)
        for r in results:
            r["parts"] = _highlight(r["text"], words)
        return self.render(request, "search.html", q=text, where=where, into=into,
                           results=results, total=total, limit=MAX_SEARCH_RESULTS,
                           theme_choices=[(str(int(t.theme_id)), t.name) for t in
                                          self.run.themes.sort_values("theme_id").itertuples()],
                           back=str(request.url.path) + (f"?{request.url.query}"
                                                         if request.url.query else ""))

    # --- audit log ---------------------------------------------------------------------
    def log(self, request: Request, form) -> Response:
        with self.store() as store:
            rows = store.audit_log()
            undo = store.undo_target()
        entries = []
        for r in reversed(rows[-1000:]):
            entries.append({**r, "value_text": self._describe_json(r["value"]),
                            "previous_text": self._describe_json(r["previous"]),
                            "label": self.run.label(r["item"]) if r["item"] else ""})
        return self.render(request, "log.html", entries=entries, total=len(rows), undo=undo)

    def _describe_json(self, value: str | None) -> str:
        """An audit-log value in words (decisions as decisions; other text as it is)."""
        if not value or not value.startswith("{"):
            return value or ""
        try:
            d = Decision.from_json(value)
        except (ValueError, TypeError):
            return value
        return self.say(d) + (f' "{d.comment}"' if d.comment else "")

    # --- export -------------------------------------------------------------------------
    def _refi(self):
        """``pipeline.exchange.refi`` if it is installed and can export (checked at each request)."""
        try:
            mod = importlib.import_module("pipeline.exchange.refi")
        except Exception:  # noqa: BLE001 - absent or broken: no REFI buttons
            return None
        return mod if hasattr(mod, "export_codebook") and hasattr(mod, "write_qdc") else None

    def _files(self) -> list[dict]:
        out = []
        for folder, suffixes in DOWNLOADS.items():
            base = self.run.folder / folder
            if base.is_dir():
                for p in sorted(base.iterdir()):
                    if p.is_file() and p.suffix in suffixes:
                        out.append({"folder": folder, "name": p.name, "size": p.stat().st_size,
                                    "when": datetime.fromtimestamp(p.stat().st_mtime)
                                    .strftime("%Y-%m-%d %H:%M:%S")})
        return out

    def export_page(self, request: Request, form) -> Response:
        with self.store() as store:
            st = review_status(store)
        refi = self._refi()
        return self.render(request, "export.html", st=st, files=self._files(),
                           refi=refi is not None, qdpx=refi is not None
                           and hasattr(refi, "write_qdpx"),
                           final=(self.run.folder / "review" / "codebook.yaml").is_file())

    def export_codebook(self, request: Request, form) -> Response:
        self.me(request)
        from ..review.apply import build_codebook, write_codebook

        with self.store() as store:
            st = review_status(store)
        try:
            cb = build_codebook(self.run, st)
        except ReviewError as exc:
            raise Refused(400, exc.reason, exc.hint or "") from None
        paths = write_codebook(cb, self.run.folder / "review")
        n = sum(len(d["categories"]) for d in cb.data["domains"])
        names = ", ".join(p.name for p in paths.values())
        self.flash(request, f"Final codebook written: {n} categories in "
                   f"{len(cb.data['domains'])} domains ({names}).")
        return RedirectResponse("/export", status_code=303)

    def export_refi(self, request: Request, form) -> Response:
        self.me(request)
        kind = request.path_params["kind"]
        refi = self._refi()
        if refi is None or kind not in ("qdc", "qdpx") or (kind == "qdpx" and
                                                          not hasattr(refi, "write_qdpx")):
            raise Refused(404, "REFI-QDA export is not available in this installation.")
        try:
            if kind == "qdc":
                final = self.run.folder / "review" / "codebook.yaml"
                source = final if str(form.get("which", "")) == "final" and final.is_file() \
                    else self.run.folder
                codes, origin = refi.export_codebook(source)
                target = (final.with_suffix(".qdc") if source == final else
                          self.run.folder / "export" / f"{self.run.name}.qdc")
                refi.write_qdc(codes, target, origin)
            else:
                from ..exchange.codes import load_run as load_for_refi

                target = self.run.folder / "export" / f"{self.run.name}.qdpx"
                refi.write_qdpx(load_for_refi(self.run.folder), target)
        except ConsensaError as exc:
            raise Refused(400, exc.reason, exc.hint or "") from None
        self.flash(request, f"REFI-QDA file written: {target.name}.")
        return RedirectResponse("/export", status_code=303)

    def download(self, request: Request, form) -> Response:
        folder, name = request.path_params["folder"], request.path_params["name"]
        allowed = {(f["folder"], f["name"]) for f in self._files()}
        if (folder, name) not in allowed:
            raise Refused(404, "There is no such file to download.")
        media = {".yaml": "application/yaml", ".md": "text/markdown; charset=utf-8",
                 ".csv": "text/csv; charset=utf-8", ".qdc": "application/xml",
                 ".qdpx": "application/zip"}[Path(name).suffix]
        return FileResponse(self.run.folder / folder / name, media_type=media, filename=name)


def _highlight(text: str, words: list[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_a_match) for the words searched (case-insensitive)."""
    if not words:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)),
                         re.IGNORECASE)
    out, pos = [], 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


class Guard:
    """Token and session check in front of the app, and the security headers on every
    response (the 403 pages included)."""

    def __init__(self, app, review: ReviewApp) -> None:
        self.app = app
        self.review = review

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

        review = self.review
        request = Request(scope)
        token = request.query_params.get("token")
        if token is not None:
            if hmac.compare_digest(token.encode(), review.token.encode()):
                session = review.session_of(request.cookies.get(review.cookie)) \
                    or review.new_session()
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(review.cookie, session.sid, httponly=True,
                                    samesite="strict", path="/")
                await response(scope, receive, send_with_headers)
                return
            await self._refuse(scope, receive, send_with_headers,
                               "This link's access token is not the one of this server.",
                               "Use the address `consensa serve` printed when it started "
                               "(a new start prints a new one).")
            return
        session = review.session_of(request.cookies.get(review.cookie))
        if session is None:
            await self._refuse(scope, receive, send_with_headers,
                               "This review can be opened only with the address "
                               "`consensa serve` printed (it holds an access token).",
                               "Open that address in this browser.")
            return
        if request.method == "POST" and not _same_origin(request):
            await self._refuse(scope, receive, send_with_headers,
                               "A form from another site was refused.", "")
            return
        if session.who is None and request.method == "GET" and not (
                request.url.path in ("/login",) or request.url.path.startswith("/static/")):
            await RedirectResponse("/login", status_code=303)(scope, receive, send_with_headers)
            return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope, receive, send, message: str, hint: str) -> None:
        html = self.review.env.get_template("forbidden.html").render(message=message, hint=hint)
        await HTMLResponse(html, status_code=403)(scope, receive, send)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def create_app(run_folder: str | Path, token: str | None = None) -> ReviewApp:
    return ReviewApp(run_folder, token)
