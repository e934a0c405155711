"""Screenshots of issue 28's pages (Training, Data, Scan for chosen COVID-CT-MD patients) in Debian's Chromium
through Playwright, for a person to look at; nothing is asserted.

    python -m bench.page_screens --runs runs [--patients P002,normal002,cap002] [--out test-artifacts/pages]

Serves the dashboard on --runs (its newest run is the one shown), then saves training.png, data.png and
scan-<patient>.png (each scan scored by the run, which takes a minute or two on a CPU) into --out (git-ignored
test-artifacts/ by default; screenshots of real slices are derived from the data: never commit them).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tests.test_browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path, streamlit_app

SCAN_WAIT_MS = 600_000  # scoring a whole series on a busy CPU


def shoot(runs: Path, out: Path, patients: list[str]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with streamlit_app(runs, out / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        for path, heading in (("training", "Training"), ("data", "Data")):
            page.goto(f"{url}/{path}")
            page.locator("h1", has_text=heading).first.wait_for(timeout=180_000)
            page.wait_for_timeout(8000)  # the images and charts of the first rerun
            shots.append(out / f"{path}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
        for patient in patients:
            page.goto(f"{url}/scan")
            page.locator("h1", has_text="Scan").first.wait_for(timeout=180_000)
            page.get_by_text("COVID-CT-MD patient").first.click()
            page.locator("[data-testid='stSelectbox']").filter(has_text="Patient").first.click()
            page.get_by_role("option", name=patient, exact=False).first.click()
            page.get_by_text("Scan decision", exact=True).first.wait_for(timeout=SCAN_WAIT_MS)
            page.wait_for_timeout(5000)
            shots.append(out / f"scan-{patient}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
        browser.close()
    return shots


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, type=Path, help="the runs folder the dashboard serves")
    p.add_argument("--patients", default="P002,normal002,cap002", help="COVID-CT-MD patients for the Scan page")
    p.add_argument("--out", type=Path, default=ARTIFACTS / "pages")
    args = p.parse_args(argv)
    for f in shoot(args.runs, args.out, [s for s in args.patients.split(",") if s]):
        print(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
