"""Serving the review app with uvicorn on a local port (``consensa serve`` says where)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from ..review.model import ReviewError, load_run
from ..review.store import ReviewStore, db_path
from .app import ReviewApp, open_folder


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


@dataclass
class Listening:
    """A review app bound to its socket, ready to serve: what ``consensa serve`` tells
    the user (the address with its token, the panel) before it blocks in :meth:`run`."""

    review: ReviewApp
    sock: socket.socket
    host: str
    port: int
    panel: dict[str, str]
    store_path: Path

    @property
    def url(self) -> str:
        """The address to open, with the access token; a wildcard host is shown as this
        computer's name, which the others on the network can reach."""
        shown = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        return self.review.url(shown, self.port)

    @property
    def open_to_network(self) -> bool:
        return not is_loopback(self.host)

    def run(self) -> None:
        """Serve until Ctrl+C."""
        import uvicorn

        config = uvicorn.Config(self.review.asgi, log_level="warning", access_log=False,
                                lifespan="off", server_header=False)
        uvicorn.Server(config).run(sockets=[self.sock])


def listen(folder: str | Path, host: str = "127.0.0.1", port: int = 0,
           judges: list[str] = (), auditors: list[str] = ()) -> Listening:
    """Add the given people to the panel, open the review and bind its socket.

    ``folder`` is a run folder, or the output folder of ``consensa precode``: then the
    review of its codebook's run, with the batch's queue (:func:`.app.open_folder`).
    """
    run_folder, batch = open_folder(folder)
    ensure_panel(run_folder, list(judges), list(auditors))
    review = ReviewApp(run_folder, queue=batch)
    with review.store() as store:
        panel = store.panel()
    sock = bind(host, port)
    return Listening(review, sock, host, sock.getsockname()[1], dict(panel), db_path(run_folder))
