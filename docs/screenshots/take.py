"""Screenshots of `consensa serve` for the README, taken from the demo run.

    .venv/bin/consensa run configs/demo.yaml --out /tmp/demo-serve
    .venv/bin/consensa review export /tmp/demo-serve --judges ana,ben,caro --auditor dee
    .venv/bin/python docs/screenshots/take.py /tmp/demo-serve

The README's screenshots come from the invented test study instead, written by
``CONSENSA_SCREENSHOTS=docs/screenshots pytest tests/test_process.py``; this script
overwrites overview.png and theme.png with pages of the demo run.

Records a few example positions first (only when the review has none yet), so the
pages show agreement and a dispute; then serves the run on a free local port and
saves overview.png and theme.png beside this file, using headless Chromium.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from pipeline.review.model import Decision, load_run
from pipeline.review.store import ReviewStore
from pipeline.web import create_app
from pipeline.web.server import bind

HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def example_positions(run_folder: Path) -> int:
    """A plausible first pass of three judges; returns the theme in dispute."""
    run = load_run(run_folder)
    themes = run.themes.sort_values(["n_cases", "n_segments"], ascending=False)
    ids = [str(int(t)) for t in themes["theme_id"]]
    disputed, target, renamed = ids[3], ids[0], ids[1]
    with ReviewStore(run) as store:
        if store.positions():
            return int(disputed)
        judges = store.judges()
        for n, judge in enumerate(judges):
            ds = [Decision(f"domain:{d}", "accept", source="example")
                  for d in sorted(run.domain_ids, key=int)]
            for tid in ids[:8]:
                if tid == disputed:
                    d = (Decision(f"theme:{tid}", "merge", target=target, source="example",
                                  comment="overlaps with the bigger theme")
                         if n != 1 else Decision(f"theme:{tid}", "accept", source="example"))
                elif tid == renamed:
                    d = Decision(f"theme:{tid}", "rename",
                                 new_name="Grief that is the therapist's own",
                                 core_idea="The client's loss touches a loss of the "
                                 "therapist's own.", source="example")
                else:
                    d = Decision(f"theme:{tid}", "accept", source="example")
                ds.append(d)
            store.record_positions([(judge, ds)], what="example positions")
        auditor = store.auditors()[0] if store.auditors() else None
        if auditor:
            store.add_audit_comment(f"theme:{disputed}", auditor,
                                    "Several quotes describe the therapist's background, "
                                    "not crying in session: check before accepting.")
        store.resolve([Decision(f"theme:{ids[2]}", "accept", source="example",
                                core_idea="Crying in session as a human, genuine moment.")],
                      by=judges[0])
    return int(disputed)


def main(run_folder: str) -> None:
    folder = Path(run_folder)
    disputed = example_positions(folder)
    review = create_app(folder)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(review.asgi, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(review.url("127.0.0.1", port))
            page.check("input[value=ben]")
            page.click("text=Continue")
            page.screenshot(path=str(HERE / "overview.png"), full_page=False)
            page.goto(f"http://127.0.0.1:{port}/theme/{disputed}")
            page.locator("details.context").first.evaluate("d => d.open = true")
            page.set_viewport_size({"width": 1280, "height": 2000})
            page.screenshot(path=str(HERE / "theme.png"), full_page=False)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    print(f"written: {HERE / 'overview.png'}, {HERE / 'theme.png'}")


if __name__ == "__main__":
    main(sys.argv[1])
