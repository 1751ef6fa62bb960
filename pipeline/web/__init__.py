"""``consensa serve RUN``: the review in the browser, over the same store as the workbooks.

:mod:`.app` (the Starlette app, put together), :mod:`.security` (access token,
sessions, CSRF, Origin checks, headers), :mod:`.pages` (what each page shows, from the
run and the store), :mod:`.routes` (the handlers: pages, forms, stale-write checks),
:mod:`.context` (the turns around a segment), :mod:`.server` (uvicorn on a local
port, the printed address). Templates in ``templates/`` (Jinja2, autoescaped),
one stylesheet in ``static/``; no script, nothing fetched from the web.
"""

from .app import ReviewApp, create_app

__all__ = ["ReviewApp", "create_app"]
