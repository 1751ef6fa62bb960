"""Serving the review app with uvicorn on a local port, and what ``consensa serve`` prints."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from ..review.model import ReviewError, load_run
from ..review.store import ReviewStore, db_path
from .app import ReviewApp


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ReviewError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                          hint="choose another --port, or leave it out to use a free one") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def ensure_panel(run_folder: Path, judges: list[str], auditors: list[str]) -> None:
    """Start the review (or add people to its panel) when names are given."""
    if not judges and not auditors:
        return
    run = load_run(run_folder)
    with ReviewStore(run, create=True) as store:
        store.set_panel(judges, auditors, by="consensa serve")


def serve(run_folder: str | Path, host: str = "127.0.0.1", port: int = 0,
          judges: list[str] = (), auditors: list[str] = (),
          say: Callable[[str], None] = print) -> int:
    import uvicorn

    run_folder = Path(run_folder)
    ensure_panel(run_folder, list(judges), list(auditors))
    review = ReviewApp(run_folder)
    with review.store() as store:
        panel = store.panel()
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    say(f"Consensa review of '{review.run.name}' ({db_path(run_folder)})")
    if not panel:
        say("  the panel is empty: add people with --judges a,b,c --auditor d")
    else:
        say(f"  panel: {', '.join(f'{n} ({r})' for n, r in panel.items())}")
    shown = host
    if host in ("0.0.0.0", "::"):
        shown = socket.gethostname()
    say(f"  open: {review.url(shown, actual)}")
    if not is_loopback(host):
        say("  WARNING: the review is open to the network on "
            f"{host}:{actual}. Anyone who has this address (it holds the access token) can "
            "read the interviews and change the review, and the traffic is not encrypted "
            "(plain http): share it only on a network you trust, and stop the server "
            "(Ctrl+C) after the meeting.")
    say("  the address is valid until the server stops; Ctrl+C stops it")
    sys.stdout.flush()
    config = uvicorn.Config(review.asgi, log_level="warning", access_log=False,
                            lifespan="off", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
