"""Screenshots of issue 29's dashboard elements (the map verdicts, the prediction sets, the out-of-distribution
flag) in Debian's Chromium through Playwright, for a person to look at; nothing is asserted.

    python -m bench.trust_screens --runs runs [--out test-artifacts/trust]

Opens the newest run's "Does it look at the disease?" page (sections 4 and 5), the Case view (its set and flag, the
verdicts expander opened) and Margin review, full page each, into --out (git-ignored test-artifacts/ by default).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tests.test_browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path, streamlit_app

PAGES = {"disease": "Does it look at the disease?", "case": "Case view", "margin": "Margin review"}


def shoot(runs: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with streamlit_app(runs, out / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, heading in PAGES.items():
            page.goto(f"{url}/{path}")
            page.locator("h1", has_text=heading).first.wait_for(timeout=120_000)
            page.wait_for_timeout(4000)  # the last elements of a rerun
            if path == "case":
                page.get_by_text("Can these maps be trusted?").first.click()
                page.wait_for_timeout(1500)
            shots.append(out / f"{path}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
            if path == "disease":  # the page scrolls inside its own container: the decision section too
                page.get_by_text("5 · Can its decision be trusted").first.scroll_into_view_if_needed()
                page.wait_for_timeout(1000)
                shots.append(out / "disease-decision.png")
                page.screenshot(path=str(shots[-1]))
        browser.close()
    return shots


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, type=Path, help="the runs folder the dashboard serves")
    p.add_argument("--out", type=Path, default=ARTIFACTS / "trust")
    args = p.parse_args(argv)
    for f in shoot(args.runs, args.out):
        print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
