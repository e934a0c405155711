"""Seconds of the first visit to every dashboard page, in headless Chromium (the browser tests' harness).

    python -m bench.first_visit runs/real-demo            # one JSON object: page -> seconds
    python -m bench.first_visit runs/demo --pages map,disease

Starts `streamlit run dashboard/app.py` over the run's folder of runs, opens each page once, in the sidebar's
order, and times from the navigation to the end of Streamlit's script run (no status widget left), the page
title drawn. The Map page also waits for its 3D map to be drawn and two frames painted since (the browser
tests' fixed pause before hovering is not counted). A page that shows a traceback is an error. Each visit is
the page's first in that server: Streamlit's in-process caches are cold for it, the run's disk caches
(features/, filled by the pipeline's "precompute" stage) are what they are. The first page visited
(Training, the lightest) also pays the app's own start (its imports, the list of runs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("training", "", "data", "map", "disease", "case", "margin", "new_slice", "scan")  # "": Overview


def visit(page, url: str, path: str) -> float:
    from tests.test_browser import map_frame, wait_idle

    t0 = time.perf_counter()
    page.goto(f"{url}/{path}")
    page.get_by_text("Research use only").first.wait_for(timeout=300_000)
    wait_idle(page, timeout=300_000)
    if path == "map":
        map_frame(page, settle_ms=0)
    seconds = time.perf_counter() - t0
    if page.locator("[data-testid=stException]").count():
        raise RuntimeError(f"page {path or 'overview'} shows a traceback")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="the run folder, e.g. runs/real-demo")
    p.add_argument("--pages", default=",".join(p or "overview" for p in PAGES))
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.test_browser import browser_page, streamlit_app

    run = Path(args.run).resolve()
    wanted = ["" if n == "overview" else n for n in args.pages.split(",")]
    out = {}
    with streamlit_app(run.parent, ROOT / "test-artifacts" / "first-visit-streamlit.log") as url, \
            browser_page() as page:
        for path in wanted:
            out[path or "overview"] = round(visit(page, url, path), 2)
    print(json.dumps({"run": str(run), "seconds": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
