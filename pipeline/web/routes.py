"""The review app's pages and forms: one thin handler per address.

A handler reads the request (path, query, form), asks :mod:`.pages` for what a page
shows or the review store to save, and answers with a page or a redirect. Each is
called as ``handler(review, request, form)`` in a worker thread (the store and the
pandas work block), after :class:`~.app.ReviewApp` has checked the form's CSRF token
and, where :data:`ROUTES` says so, that someone on the panel is signed in.

Two people at once: every form carries the version of what it changes (see
:meth:`ReviewStore.item_version`); a save based on a state that has changed since is
refused with 409 and a message saying who changed what, and the page shows the
current state with the refused entries kept in the form.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from ..errors import ConsensaError
from ..exchange import refi
from ..precode import NONE, PrecodeBatch, record_choices
from ..review.agreement import ReviewStatus, current_label, review_status
from ..review.apply import (
    alike_categories,
    build_codebook,
    live_codebook,
    may_be_named_alike,
    write_codebook,
)
from ..review.model import Decision, ReviewError, segment_item
from ..review.store import StaleError
from . import pages
from .pages import item_url
from .security import local_target

if TYPE_CHECKING:
    from .app import ReviewApp


class Refused(Exception):
    """A request the app answers with an error page (status, message)."""

    def __init__(self, status: int, message: str, hint: str = "", by_you: bool = False,
                 by: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint
        #: a stale save overtaken by the person's own earlier save (the page says so)
        self.by_you = by_you
        #: who made a stale save stale, as the store logged it ("": not known)
        self.by = by


def _stale(exc: StaleError, who: str | None) -> Refused:
    """A stale save as a 409 page: the store's words, and whose change overtook it (the
    person's own, from another tab, or another judge's, named)."""
    reason, hint = exc.reason, str(exc.hint or "")
    return Refused(409, reason[:1].upper() + reason[1:] + ".", hint[:1].upper() + hint[1:],
                   pages.stale_by(exc, who), pages.changed_by(exc))


def _version(form, key: str) -> int:
    try:
        return int(str(form.get(key, "0")) or 0)
    except ValueError:
        raise Refused(400, f"The form's field {key!r} is not a version number.") from None


def _mode(form) -> str:
    mode = str(form.get("as", ""))
    if mode not in ("position", "consensus"):
        raise Refused(400, "Say whether this is your position or the consensus.")
    return mode


def _back(form, default: str = "/") -> str:
    return local_target((form or {}).get("back"), default)


def _who(request: Request) -> str | None:
    return request.state.session.who


# --- who are you -----------------------------------------------------------------------

def login(review: ReviewApp, request: Request, form) -> Response:
    with review.store() as store:
        panel = store.panel()
    if form is not None:
        name = str(form.get("name", ""))
        if name not in panel:
            raise Refused(400, f"{name!r} is not on this review's panel.")
        request.state.session.who = name
        return RedirectResponse("/", status_code=303)
    return review.render(request, "login.html", people=panel)


def logout(review: ReviewApp, request: Request, form) -> Response:
    request.state.session.who = None
    return RedirectResponse("/login", status_code=303)


# --- pages -----------------------------------------------------------------------------

def overview(review: ReviewApp, request: Request, form) -> Response:
    filters = pages.Filters.from_query(request.query_params)
    with review.store() as store:
        ctx = pages.overview(review.run, store, filters)
    return review.render(request, "overview.html", **ctx)


def item_page(review: ReviewApp, request: Request, item: str, error: Exception | None = None,
              draft: Decision | None = None, status: int = 200,
              comment_draft: str = "") -> Response:
    """The page of a theme, domain or segment (404 for one this run does not have);
    with ``error``, the refused save and, as ``draft`` (a decision) or
    ``comment_draft`` (an auditor's comment), the entries to keep."""
    run = review.run
    kind, _, ident = item.partition(":")
    if kind not in ("theme", "domain", "segment", "core_idea", "subcategory") \
            or not pages.is_item(run, item):
        raise Refused(404, f"This run has no {kind or 'item'} {ident!r}.")
    who, start_from = _who(request), request.query_params.get("from", "")
    with review.store() as store:
        if kind == "subcategory":  # kept or dropped on its category's page
            parent = str(run.subcategory(ident)["parent_theme"])
            ctx = pages.theme_page(run, store, review.context, parent, who, "", error, draft)
            # a refused comment goes back into that subcategory's comment form
            return review.render(request, "theme.html", http_status=status,
                                 **{**ctx, "comment_draft": comment_draft,
                                    "comment_item": item})
        if kind == "core_idea":  # edited on its domain's page: that page, with the error
            dom = ident.rpartition(":")[2]
            ctx = pages.domain_page(run, store, dom, who, "", error, None, core_draft=draft)
            return review.render(request, "domain.html", http_status=status, **ctx)
        if kind == "theme":
            ctx = pages.theme_page(run, store, review.context, ident, who, start_from, error,
                                   draft)
        elif kind == "domain":
            ctx = pages.domain_page(run, store, ident, who, start_from, error, draft)
        else:
            ctx = pages.segment_page(run, store, review.context, ident, who, start_from,
                                     error, draft)
    return review.render(request, f"{kind}.html", http_status=status,
                         **{**ctx, "comment_draft": comment_draft})


def theme(review: ReviewApp, request: Request, form) -> Response:
    return item_page(review, request, f"theme:{request.path_params['ident']}")


def domain(review: ReviewApp, request: Request, form) -> Response:
    return item_page(review, request, f"domain:{request.path_params['ident']}")


def segment(review: ReviewApp, request: Request, form) -> Response:
    return item_page(review, request, f"segment:{request.path_params['ident']}")


def subcategory(review: ReviewApp, request: Request, form) -> Response:
    """A proposed subcategory is decided on its category's page: sent there, to it."""
    ident = str(request.path_params["ident"])
    if not pages.is_item(review.run, f"subcategory:{ident}"):
        raise Refused(404, f"This run proposed no subcategory {ident!r}.")
    parent = review.run.subcategory(ident)["parent_theme"]
    return RedirectResponse(f"/theme/{parent}#sub-{ident}", status_code=303)


def search(review: ReviewApp, request: Request, form) -> Response:
    q = request.query_params
    with review.store() as store:
        ctx = pages.search(review.run, store, review.context, q.get("q", ""), q.get("in", ""),
                           q.get("into", ""), _who(request), like=q.get("like", ""),
                           like_text=q.get("like_text", ""), similar=review.similar)
    back = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    return review.render(request, "search.html", back=back, **ctx)


def log(review: ReviewApp, request: Request, form) -> Response:
    with review.store() as store:
        ctx = pages.audit_log(review.run, store)
    return review.render(request, "log.html", **ctx)


# --- writes ----------------------------------------------------------------------------

def _not_saved(exc: ReviewError, what: str = "Nothing was saved.") -> Refused:
    """A refused save as an error page: the store's reason, that nothing was saved, and
    the store's advice where it gives one (a store busy or a disk refusing the write
    says what to do; a bad entry needs none)."""
    hint = str(exc.hint or "")
    return Refused(400, exc.reason, f"{what} {hint[:1].upper()}{hint[1:]}" if hint else what)


def _warn_alike(review: ReviewApp, request: Request, store, item: str, name: str,
                st: ReviewStatus | None = None) -> None:
    """After a consensus that names category ``item`` ``name``: warn, as ``review apply``
    does, when a category of the same domain now has a name alike ("Crying" and
    "crying"); the judges see it where they typed the name, not only when the codebook
    is written. ``st``: the status after the save, where the caller has it.

    The codebook is built only when the name can be alike another
    (:func:`may_be_named_alike`): built at every rename, it was most of the save."""
    st = st or review_status(store)
    if not may_be_named_alike(review.run, st.effective_consensus(), item, name):
        return
    codebook = live_codebook(review.run, st)["codebook"]
    for d, a, b in alike_categories(codebook):
        review.flash(request, f'Domain {d["id"]} "{d["name"]}" now holds categories {a["id"]} '
                     f'"{a["name"]}" and {b["id"]} "{b["name"]}", named alike: rename one, '
                     "or merge them.", "warn")


def decision_from_form(item: str, form, who: str) -> Decision:
    """The decision form's entries as a Decision (:meth:`Decision.parse`, as workbooks
    and the command line). The form shows every field at once, so the fields that do
    not go with the chosen decision are dropped, not refused."""
    fields = {k: form.get(k, "") for k in ("decision", "new_name", "target", "domain",
                                           "core_idea", "comment")}
    fields["segments"] = form.getlist("segments")  # the ticked boxes, one id each
    return Decision.parse(item, fields, source=f"web form ({who})", ignore_unused=True)


def decide(review: ReviewApp, request: Request, form) -> Response:
    who, _ = review.me(request, "judge")
    item = str(form.get("item", ""))
    if not pages.is_item(review.run, item):
        raise Refused(400, f"Unknown item {item!r}.")
    mode = _mode(form)
    try:
        d = decision_from_form(item, form, who)
    except ReviewError as exc:
        raise Refused(400, exc.reason, exc.hint or "") from None
    if not d.decision:
        return item_page(review, request, item, draft=d, status=400, error=ReviewError(
            "Choose a decision first: the form starts without one, so that nothing is "
            "recorded that nobody chose.", hint="Nothing was saved."))
    try:
        with review.store() as store:
            if mode == "position":
                store.record_positions([(who, [d])], what=f"web: {who}",
                                       expect={(who, item): _version(form, "v_mine")})
            else:
                store.resolve([d], by=who, expect={item: _version(form, "v_item")})
            st = review_status(store)
            agreed = st.effective_consensus()
            label = review.run.label(item, agreed)
            what = "your position" if mode == "position" else "the consensus"
            review.flash(request, f"Saved {what} on {label}: {review.say(d, agreed)}.")
            if mode != "position" and d.kind == "theme" and d.new_name:
                _warn_alike(review, request, store, item, d.new_name, st)
    except StaleError as exc:
        return item_page(review, request, item, error=exc, draft=d, status=409)
    except ReviewError as exc:
        return item_page(review, request, item, error=exc, draft=d, status=400)
    return RedirectResponse(_back(form, item_url(item)), status_code=303)


def move(review: ReviewApp, request: Request, form) -> Response:
    who, _ = review.me(request, "judge")
    mode = _mode(form)
    ids = list(dict.fromkeys(str(s) for s in form.getlist("segments") if str(s)))
    back = _back(form)
    if not ids:
        raise Refused(400, "Tick the segments to move first.")
    target = str(form.get("move_to", "")).strip()  # Decision.parse tidies the id
    if not target:
        raise Refused(400, "Choose the theme to move the segments to.")
    fields = {"decision": "keep"} if target == "keep" else {"decision": "move", "target": target}
    try:
        decisions = [Decision.parse(segment_item(sid), fields, source=f"web form ({who})")
                     for sid in ids]
        with review.store() as store:
            if mode == "position":
                store.record_positions([(who, decisions)], what=f"web: {who}", expect={
                    (who, d.item): _version(form, f"vm:{d.ident}") for d in decisions})
            else:
                store.resolve(decisions, by=who, expect={
                    d.item: _version(form, f"vi:{d.ident}") for d in decisions})
            agreed = review_status(store).effective_consensus()
    except StaleError as exc:
        raise _stale(exc, who) from None
    except ReviewError as exc:
        raise _not_saved(exc) from None
    what = "your position" if mode == "position" else "the consensus"
    words = review.say(decisions[0], agreed)
    review.flash(request, f"Saved {what}: {len(decisions)} segment(s), {words}.")
    return RedirectResponse(back, status_code=303)


def comment(review: ReviewApp, request: Request, form) -> Response:
    who, _ = review.me(request, "auditor")
    item = str(form.get("item", ""))
    if not pages.is_item(review.run, item):
        raise Refused(400, f"Unknown item {item!r}.")
    text = str(form.get("comment", "")).strip()
    try:
        with review.store() as store:
            store.add_audit_comment(item, who, text)
            label = current_label(store, item)
    except ReviewError as exc:
        return item_page(review, request, item, error=exc, status=400, comment_draft=text)
    review.flash(request, f"Comment on {label} recorded.")
    return RedirectResponse(_back(form, item_url(item)), status_code=303)


def answer(review: ReviewApp, request: Request, form) -> Response:
    """A judge's answer to an auditor's comment (accept or argue), or ``undo``: their
    answer taken back. The choice starts empty: no answer is given that nobody chose."""
    who, _ = review.me(request, "judge")
    try:
        cid = int(str(form.get("comment_id", "")))
    except ValueError:
        raise Refused(400, "The form does not say which comment it answers.") from None
    if not 0 < cid < 2 ** 63:           # SQLite's integers: a larger one is no comment id
        raise Refused(400, f"There is no audit comment {cid}.", "Nothing was saved.")
    word = str(form.get("answer", "")).strip()
    try:
        with review.store() as store:
            if word == "undo":
                row = store.undo_answer(cid, who)
            else:
                row = store.answer_audit(cid, who, word, str(form.get("text", "")))
            label = current_label(store, row["item"])
    except ReviewError as exc:
        raise Refused(400, exc.reason[:1].upper() + exc.reason[1:] + ".",
                      "Nothing was saved.") from None
    what = "taken back" if word == "undo" else f"recorded ({word})"
    review.flash(request, f"Your answer to {row['by']}'s comment on "
                 f"{label} {what}.")
    return RedirectResponse(_back(form, item_url(row["item"])), status_code=303)


def create_category(review: ReviewApp, request: Request, form) -> Response:
    """A new category of the ticked segments (from a search or a theme's page), named
    and put in a domain by the judges: a consensus decision, undone like any other."""
    who, _ = review.me(request, "judge")
    ids = list(dict.fromkeys(str(s) for s in form.getlist("segments") if str(s)))
    name = " ".join(str(form.get("category_name", "")).split())
    domain = str(form.get("category_domain", "")).strip()
    if not ids:
        raise Refused(400, "Tick the segments of the new category first.", "Nothing was saved.")
    if not name or not domain:
        raise Refused(400, "Give the new category a name and choose its domain.",
                      "Nothing was saved.")
    try:
        with review.store() as store:
            item = store.create_category(name, ids, domain, who,
                                         str(form.get("category_definition", "")))
            label = current_label(store, item)
            review.flash(request, f"Category created: {label}, {len(ids)} segment(s).")
            _warn_alike(review, request, store, item, name)
    except ReviewError as exc:
        raise _not_saved(exc) from None
    return RedirectResponse(item_url(item), status_code=303)


def create_domain(review: ReviewApp, request: Request, form) -> Response:
    """A new domain, named and defined by the judges: a consensus decision (undone from
    the overview or the log like any other)."""
    who, _ = review.me(request, "judge")
    name = " ".join(str(form.get("new_name", "")).split())
    if not name:
        raise Refused(400, "Give the new domain a name.", "Nothing was saved.")
    try:
        with review.store() as store:
            item = store.create_domain(name, who, str(form.get("core_idea", "")))
            label = current_label(store, item)
    except ReviewError as exc:
        raise _not_saved(exc) from None
    review.flash(request, f"Domain created: {label}. Reassign themes to it "
                 "from their pages.")
    return RedirectResponse(item_url(item), status_code=303)


def split_domain(review: ReviewApp, request: Request, form) -> Response:
    """Split a domain: the ticked categories go to a new domain the judges name. One
    consensus decision on the domain, undone like any other."""
    who, _ = review.me(request, "judge")
    domain = str(form.get("domain", "")).strip()
    if not pages.is_item(review.run, f"domain:{domain}"):
        raise Refused(400, f"Unknown domain {domain!r}.")
    themes = list(dict.fromkeys(str(t) for t in form.getlist("themes") if str(t)))
    name = " ".join(str(form.get("new_name", "")).split())
    if not themes:
        raise Refused(400, "Tick the categories that go to the new domain first.",
                      "Nothing was saved.")
    if not name:
        raise Refused(400, "Give the new domain a name.", "Nothing was saved.")
    try:
        with review.store() as store:
            item = store.split_domain(domain, themes, name, who,
                                      str(form.get("definition", "")),
                                      expect=_version(form, "v_item"))
            label = current_label(store, item)
    except StaleError as exc:
        raise _stale(exc, who) from None
    except ReviewError as exc:
        raise _not_saved(exc) from None
    review.flash(request, f"Domain {domain} split: {len(themes)} categor"
                 f"{'y' if len(themes) == 1 else 'ies'} moved to {label}.")
    return RedirectResponse(item_url(item), status_code=303)


def next_round(review: ReviewApp, request: Request, form) -> Response:
    """Close the round the form was shown in and open the next, starting from its
    consensus (as `consensa review next-round`), when the overview offers it
    (:func:`pages.next_round_refusal`)."""
    who, _ = review.me(request, "judge")
    try:
        with review.store() as store:
            shown = str(form.get("round", ""))
            try:
                store.check_round(int(shown))
            except ValueError:
                raise Refused(400, f"The form's field 'round' ({shown[:20]!r}) is not a round "
                              "number.", "Nothing was changed.") from None
            # the round the form means, even if another judge started the next one
            # since the check above: the store's write below refuses that one (409)
            st = review_status(store, int(shown))
            # the rule the overview shows the button by: a page opened before an item
            # was reopened or a comment written does not close the round over it
            why = pages.next_round_refusal(st)
            if why:
                raise Refused(400, f"Round {st.round + 1} cannot start yet: {why}.",
                              "Nothing was changed.")
            # the round the form showed, checked again in the store's write: two judges
            # pressing "Start round 2" at once both pass the check above
            new = store.next_round(who, closed=st.closed, round=int(shown))
    except StaleError as exc:
        raise _stale(exc, who) from None
    except ReviewError as exc:
        raise _not_saved(exc, "Nothing was changed.") from None
    review.flash(request, f"Round {new - 1} closed; round {new} is open and starts from its "
                 "consensus.")
    return RedirectResponse("/", status_code=303)


def undo(review: ReviewApp, request: Request, form) -> Response:
    who, _ = review.me(request, "judge")
    try:
        with review.store() as store:
            row = store.undo_consensus(who, expect=_version(form, "expect"))
            agreed = review_status(store).effective_consensus()
            label = review.run.label(row["item"], agreed)
    except StaleError as exc:
        raise _stale(exc, who) from None
    except ReviewError as exc:
        raise Refused(400, exc.reason, exc.hint or "") from None
    d = Decision.from_json(row["value"])
    review.flash(request, f"Undone: the consensus on {label} "
                 f"({review.say(d, agreed)}, recorded by {row['who']}).")
    return RedirectResponse(_back(form), status_code=303)


# --- the pre-coding queue ------------------------------------------------------------------

def _batch(review: ReviewApp) -> PrecodeBatch:
    if review.queue is None:
        raise Refused(404, "This review serves no pre-coding queue.",
                      "Start `consensa serve` with the output folder of `consensa precode` "
                      "(its --out) to code that batch's queue here.")
    return review.queue


def _page_number(text: str | None) -> int:
    try:
        return int(str(text or "1"))
    except ValueError:
        return 1


def queue(review: ReviewApp, request: Request, form) -> Response:
    """The segments the pre-coding queued for a person, a page at a time."""
    batch = _batch(review)
    q = request.query_params
    ctx = pages.queue_page(batch, q.get("show", "left"), _page_number(q.get("page")))
    return review.render(request, "queue.html", **ctx)


def choose(review: ReviewApp, request: Request, form) -> Response:
    """A person's code for one queued segment, stored as `consensa precode import`
    stores a filled-in queue workbook (:func:`pipeline.precode.record_choices`), by
    the judge who is signed in: coding is a judge's part, and an auditor's is to
    comment on it (CQR), so an auditor's choice is refused and nothing is stored.
    The category starts empty: nothing is stored that nobody chose."""
    who, _ = review.me(request, "judge")
    batch = _batch(review)
    sid = str(form.get("segment", ""))
    raw = str(form.get("category", "")).strip()
    if not raw:
        raise Refused(400, "Choose a category, or 'none', first: the form starts without one, "
                      "so that nothing is stored that nobody chose.", "Nothing was saved.")
    if raw.lower() == "none":
        cid = NONE
    else:
        try:
            cid = int(raw)
        except ValueError:
            raise Refused(400, f"{raw!r} is not a category id or 'none'.",
                          "Nothing was saved.") from None
    try:
        choice = batch.choice(sid, cid, str(form.get("comment", "")).strip(), who)
        with review.store() as store:
            record_choices(store, batch.batch, [choice], who,
                           f"web: {who}, precode queue ({batch.batch})", batch.categories)
    except ConsensaError as exc:
        raise Refused(400, exc.reason, exc.hint or "Nothing was saved.") from None
    review.flash(request, f"Stored your choice for segment {sid}: "
                 f"{pages.category_label(batch, cid)}.")
    return RedirectResponse(pages.queue_next(batch, sid, str(form.get("show", ""))),
                            status_code=303)


# --- export ----------------------------------------------------------------------------

def export_page(review: ReviewApp, request: Request, form) -> Response:
    with review.store() as store:
        ctx = pages.export_page(review.run, store)
    return review.render(request, "export.html", **ctx)


def export_codebook(review: ReviewApp, request: Request, form) -> Response:
    review.me(request)
    run = review.run
    with review.store() as store:
        st = review_status(store)
    if not st.closed:  # the button is disabled then; a form sent anyway gets the reason
        n = len(st.pending())
        review.flash(request, f"The final codebook was not written: round {st.round} is still "
                     f"open, {n} item(s) need a consensus decision (listed below).", "error")
        return RedirectResponse("/export", status_code=303)
    try:
        cb = build_codebook(run, st)
    except ReviewError as exc:
        raise Refused(400, exc.reason, exc.hint or "") from None
    paths = write_codebook(cb, run.folder / "review")
    n = sum(len(d["categories"]) for d in cb.data["domains"])
    names = ", ".join(p.name for p in paths.values())
    review.flash(request, f"Final codebook written: {n} categories in "
                 f"{len(cb.data['domains'])} domains ({names}).")
    return RedirectResponse("/export", status_code=303)


def export_refi(review: ReviewApp, request: Request, form) -> Response:
    """The REFI-QDA files of what the judges agreed (pipeline/exchange/agreed.py): the
    agreed codebook once every item has a consensus, a draft marked as such while
    items are open; Consensa's proposal only for a run nobody has reviewed yet. The
    file name says which (``-agreed``, ``-draft``, ``-proposal``)."""
    review.me(request)
    run = review.run
    kind = request.path_params["kind"]
    if kind not in ("qdc", "qdpx"):
        raise Refused(404, "There is no such REFI-QDA export (there are .qdc and .qdpx).")
    with review.store() as store:
        st = review_status(store)
    draft = not st.closed
    try:
        if kind == "qdc":
            target, _, content = refi.export_qdc(run.folder, draft=draft)
        else:
            target, content = refi.export_qdpx(run.folder, draft=draft)
    except ConsensaError as exc:
        raise Refused(400, exc.reason, exc.hint or "") from None
    what = {"draft": f"a DRAFT: {len(st.pending())} item(s) have no consensus yet and keep "
                     "the proposal",
            "proposal": "Consensa's proposal (nothing has been reviewed yet)"}.get(
        getattr(content, "kind", ""), "the agreed codebook")
    review.flash(request, f"REFI-QDA file written: {target.name}, {what}.")
    return RedirectResponse("/export", status_code=303)


def download(review: ReviewApp, request: Request, form) -> Response:
    folder, name = request.path_params["folder"], request.path_params["name"]
    allowed = {(f["folder"], f["name"]) for f in pages.downloads(review.run.folder)}
    if (folder, name) not in allowed:
        raise Refused(404, "There is no such file to download.")
    media = pages.MEDIA_TYPES[Path(name).suffix]
    return FileResponse(review.run.folder / folder / name, media_type=media, filename=name)


#: (path, handler, methods, needs a person on the panel signed in)
ROUTES = [
    ("/", overview, ["GET"], True),
    ("/login", login, ["GET", "POST"], False),
    ("/logout", logout, ["POST"], False),
    ("/theme/{ident}", theme, ["GET"], True),
    ("/domain/{ident}", domain, ["GET"], True),
    ("/segment/{ident}", segment, ["GET"], True),
    ("/subcategory/{ident}", subcategory, ["GET"], True),
    ("/decide", decide, ["POST"], True),
    ("/move", move, ["POST"], True),
    ("/comment", comment, ["POST"], True),
    ("/undo", undo, ["POST"], True),
    ("/answer", answer, ["POST"], True),
    ("/next-round", next_round, ["POST"], True),
    ("/create-domain", create_domain, ["POST"], True),
    ("/split-domain", split_domain, ["POST"], True),
    ("/create-category", create_category, ["POST"], True),
    ("/search", search, ["GET"], True),
    ("/log", log, ["GET"], True),
    ("/export", export_page, ["GET"], True),
    ("/export/codebook", export_codebook, ["POST"], True),
    ("/export/refi/{kind}", export_refi, ["POST"], True),
    ("/download/{folder}/{name}", download, ["GET"], True),
    ("/queue", queue, ["GET"], True),
    ("/queue/choose", choose, ["POST"], True),
]
