"""The review web app: the judges' consensus meeting over ``RUN/review/decisions.sqlite``.

Every read and write goes through :class:`pipeline.review.store.ReviewStore`, the
same store (and the same validation) as the workbooks, so nothing is kept twice.

The app is put together here from three parts, each with one job:

* :mod:`.security`: the access token, sessions, CSRF, Origin checks, form limits and
  the security headers (:class:`~.security.Guard`, in front of everything);
* :mod:`.pages`: what each page shows, built from the run and the store (plain
  functions, testable without a server);
* :mod:`.routes`: one thin handler per address, reading the request and answering
  with a rendered page or a redirect.

Who
  At the first visit a person picks their name from the review's panel (judges and
  auditors). Judges record positions and consensus decisions; auditors comment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..precode import PrecodeBatch, is_precode_folder, open_batch
from ..report.templating import make_environment
from ..review.agreement import ReviewStatus
from ..review.model import Decision, ReviewError, RunItems, is_change, load_run
from ..review.store import ReviewStore
from . import pages, routes
from .context import Context
from .routes import Refused
from .security import Access, FormRefused, Guard, Session, csrf_ok, read_form, typed_fields
from .similar import Similar

log = logging.getLogger("consensa.web")

HERE = Path(__file__).resolve().parent

#: the consensus so far of the page being rendered: ``say`` in a template names the
#: themes and domains a decision points to by it (a template's macros see the
#: environment's globals, not the page's context, so it cannot be passed to them)
_AGREED: ContextVar[Mapping[str, Decision] | None] = ContextVar("agreed", default=None)

#: the run as the request being handled sees it (:attr:`ReviewApp.run`)
_RUN: ContextVar[RunItems | None] = ContextVar("run", default=None)


class ReviewApp:
    """One run's review, served. ``asgi`` is the application to give to a server.

    With ``queue`` (a pre-coding of new transcripts with this run's codebook), it also
    serves that batch's queue: the segments left to a person, coded on the queue page.
    """

    def __init__(self, run_folder: str | Path, token: str | None = None,
                 queue: PrecodeBatch | None = None) -> None:
        self._run: RunItems = load_run(run_folder)
        self.queue = queue
        with self.store() as store:  # refuses a run without a review (with what to do)
            #: the panel and round last read: the header of a page that says the store
            #: cannot be opened (the folder turned read-only, say) still has them
            self.seen: tuple[dict[str, str], int] = (store.panel(), store.round)
        self.access = Access(token)
        self.context = Context(self._run)
        self.similar = Similar(self._run)  # loads the vectors at the first "find similar"
        # its own environment (it adds filters and globals), made like every page's
        self.env = make_environment(HERE / "templates", strict=False)
        self.env.filters["when"] = pages.when
        self.env.filters["item_url"] = pages.item_url
        self.env.globals.update(item_url=pages.item_url, state_words=pages.STATE_WORDS,
                                say=self.say, is_change=is_change,
                                queue_batch=queue.batch if queue is not None else None)
        table = [Route(path, self._endpoint(handler, needs_person), methods=methods)
                 for path, handler, methods, needs_person in routes.ROUTES]
        table.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
        self.app = Starlette(routes=table, exception_handlers={
            404: self._not_found, 405: self._not_found, Exception: self._crash})
        self.asgi = Guard(self.app, self.access, self._forbidden)

    # --- plumbing ---------------------------------------------------------------------
    @property
    def token(self) -> str:
        return self.access.token

    @property
    def cookie(self) -> str:
        return self.access.cookie

    def url(self, host: str, port: int) -> str:
        return self.access.url(host, port)

    def say(self, d: Decision | None, agreed: Mapping[str, Decision] | None = None) -> str:
        """A decision in words, with the names of the themes and domains it points to,
        as ``agreed`` (the consensus so far; in a template, the rendered page's) names
        them: after a rename the judges know a theme by its new name."""
        return pages.say(self.run, d, agreed if agreed is not None else _AGREED.get())

    @property
    def run(self) -> RunItems:
        """The run as the request being handled sees it: a view of its own
        (:meth:`RunItems.view`), which its store keeps in step with the categories and
        domains the judges created. The requests of several judges run at once on
        threads; one shared run, changed by every store opened, changed under a page
        being built (a theme created or undone by another judge between reading the
        status and listing the themes) and the page failed. Outside a request (opening
        the app, checking who is signed in), each use gets a view of its own."""
        view = _RUN.get()
        return view if view is not None else self._run.view()

    def store(self) -> ReviewStore:
        return ReviewStore(self.run)

    def _handle(self, handler, request: Request, form) -> Response:
        """``handler`` with a view of the run of its own (:attr:`run`), in step with the
        store as the request begins: a handler asks it about an item (a created
        category's page) before opening the store."""
        view = self._run.view()
        with ReviewStore(view):
            pass
        token = _RUN.set(view)
        try:
            return handler(self, request, form)
        finally:
            _RUN.reset(token)

    def _endpoint(self, handler, needs_person: bool = True):
        """``handler`` as a Starlette endpoint: the form read within its limits and its
        CSRF token checked, the person checked, then the handler in a worker thread."""
        async def endpoint(request: Request) -> Response:
            session: Session = request.state.session
            form = None
            if request.method == "POST":
                try:
                    form = await read_form(request)
                except FormRefused as exc:
                    return self.error(request, Refused(exc.status, exc.message, exc.hint))
                if not csrf_ok(session, str(form.get("csrf", ""))):
                    return self.error(request, Refused(
                        403, "This form was refused: its security token (CSRF) is missing or "
                        "is not the one of your session.",
                        "Open the page again from the app and submit the form there."))
            try:
                if needs_person and not self.person(session):
                    return RedirectResponse("/login", status_code=303)
                return await run_in_threadpool(self._handle, handler, request, form)
            except Refused as exc:
                # nothing was saved: what the person typed into the form is given back
                # (a stale save, a bad entry), as a store that cannot be opened gives it
                return self.error(request, exc, typed=typed_fields(form))
            except ReviewError as exc:
                # the store could not be opened at all (the folder turned read-only,
                # the disk went away): a save refused in words, not a crash, and what
                # the person typed given back. A store that opens but refuses a write
                # is the handlers' own refusal, with the form as it was sent.
                return self.unreachable(request, exc, form)
        return endpoint

    def unreachable(self, request: Request, exc: ReviewError, form) -> HTMLResponse:
        """The page for a request the review store could not be opened for: the file
        and the store's reason and advice, and for a form, what was typed in it (text
        from a person: the template escapes it), so that nothing typed is lost."""
        typed = typed_fields(form)
        lead = "Not saved:" if request.method == "POST" else "This page cannot be shown:"
        hint = str(exc.hint or "")
        log.warning("the review store could not be opened (%s %s): %s", request.method,
                    request.url.path, exc)
        # the store names its file when it cannot open it; a refusal without a file is
        # about the request, not the store
        return self.error(request, Refused(
            503 if exc.path else 400,
            f"{lead} {exc.path}: {exc.reason}." if exc.path else f"{lead} {exc.reason}.",
            hint[:1].upper() + hint[1:]), typed=typed)

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
        run = self.run
        try:
            # the panel and round on a view of its own: the page shows the run as the
            # request saw it, even if a category was created since
            with ReviewStore(self._run.view()) as store:
                panel = store.panel()
                rnd = store.round
            self.seen = (panel, rnd)
        except ReviewError:
            # the page says why the store cannot be opened; its header shows the
            # panel and round as last read
            panel, rnd = self.seen
        role = panel.get(who) if who else None
        flash = []
        if session is not None and http_status < 400:
            flash, session.flash = session.flash, []
        st = ctx.get("st")
        agreed = _AGREED.set(st.effective_consensus() if isinstance(st, ReviewStatus) else None)
        try:
            html = self.env.get_template(template).render(
                run=run, round=rnd, who=who, role=role, panel=panel,
                csrf=session.csrf if session else "", flash=flash, path=request.url.path,
                **ctx)
        finally:
            _AGREED.reset(agreed)
        return HTMLResponse(html, status_code=http_status)

    def error(self, request: Request, exc: Refused, **ctx) -> HTMLResponse:
        return self.render(request, "error.html", http_status=exc.status, code=exc.status,
                           message=exc.message, hint=exc.hint,
                           by_you=getattr(exc, "by_you", False), by=getattr(exc, "by", ""),
                           **ctx)

    async def _not_found(self, request: Request, exc: HTTPException) -> Response:
        status = getattr(exc, "status_code", 404)
        if not hasattr(request.state, "session"):
            return HTMLResponse("Not found", status_code=status)
        return self.error(request, Refused(status, "There is no such page." if status == 404
                                           else "This page does not take that kind of request."))

    async def _crash(self, request: Request, exc: Exception) -> Response:
        log.error("an unexpected error in the review app (%s %s)", request.method,
                  request.url.path, exc_info=exc)
        return HTMLResponse("<!DOCTYPE html><title>Error</title><h1>Something went wrong</h1>"
                            "<p>The error was printed where <code>consensa serve</code> runs. "
                            "Nothing was saved by this request.</p>", status_code=500)

    def _forbidden(self, message: str, hint: str, typed: list[tuple[str, str]] = ()) -> str:
        """The 403 page :class:`Guard` sends: it shows nothing of the review, only what
        the person typed into a form it refused (:func:`typed_fields`)."""
        return self.env.get_template("forbidden.html").render(message=message, hint=hint,
                                                              typed=typed)

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


def open_folder(folder: str | Path) -> tuple[Path, PrecodeBatch | None]:
    """The run whose review to serve, and the pre-coding whose queue to serve with it.

    A run folder is served as it is. The output folder of ``consensa precode`` is
    recognised by its manifest: its codebook's run is served, with its queue.
    """
    folder = Path(folder)
    if is_precode_folder(folder):
        batch = open_batch(folder)
        return batch.run_folder, batch
    return folder, None


def create_app(folder: str | Path, token: str | None = None) -> ReviewApp:
    """The review app of a run folder, or of a pre-coding's run with its queue."""
    run_folder, batch = open_folder(folder)
    return ReviewApp(run_folder, token, queue=batch)
