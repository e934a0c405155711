"""The dashboard in a real browser while a run trains (Debian's Chromium through Playwright, as tests/test_browser.py).

Every page of a run in training (the synthetic run as it was during the infected branch's first epoch: global,
heatmap and the segmenter trained, their predictions written) opens without a traceback; those that need the
finished run say which stage they wait for, and New slice and Scan ask for a file (they read it with the segmenter
alone). Screenshots of the Training page mid-run and after, and of the Data
page, go to test-artifacts/ (git-ignored).
"""
from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from tests.live_runs import run_in_training
from tests.test_browser import ARTIFACTS, BOOT, choose, chromium_path, nav, open_page, screenshot_all, streamlit_app
from tests.test_browser import browser_page as browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a Streamlit server and Chromium; the pages' AppTests are fast

# title in the sidebar -> what the page shows of a run in training (None: the page itself)
PAGES = {"Overview": None, "Training": None, "Data": None, "Map": "fusion", "Does it look at the disease?": None,
         "Case": "fusion", "Margin review": None, "New slice": None, "Scan": None}


@pytest.fixture(scope="module")
def browser_runs(synthetic_run, module_scratch):
    """runs/mid: in training, during the infected branch's first epoch (the newest); runs/tiny: finished."""
    runs = module_scratch("browser-live")
    shutil.copytree(synthetic_run, runs / "tiny")
    run_in_training(synthetic_run, runs / "mid", "infected", 1)
    now = time.time()
    os.utime(runs / "tiny", (now - 60, now - 60))
    return runs


def no_traceback(page, where: str) -> None:
    assert page.locator("[data-testid=stException]").count() == 0, f"{where}: a traceback is shown"
    assert "Traceback (most recent call last)" not in page.locator("[data-testid=stMain]").inner_text(), where


def test_every_page_of_a_run_in_training(browser_runs):
    ARTIFACTS.mkdir(exist_ok=True)
    chromium_path()
    with streamlit_app(browser_runs, ARTIFACTS / "browser-live-streamlit.log", BOOT) as url, browser() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        open_page(page, url)
        choose(page, "Run", "mid")
        main = page.locator("[data-testid=stMain]")
        for title, waits_for in PAGES.items():
            nav(page, title)
            no_traceback(page, title)
            if waits_for:
                info = main.get_by_text(re.compile(rf"needs the whole pipeline, up to its last stage {waits_for}"))
                info.first.wait_for(timeout=60_000)
                main.get_by_text(re.compile(r"Now: infected \(the infected branch\) is training: epoch 1 of")).first \
                    .wait_for(timeout=30_000)
            if title == "Training":
                main.get_by_role("heading", name="Training · mid").wait_for(timeout=60_000)
                main.get_by_text(re.compile(r"^Training since .*now infected")).first.wait_for(timeout=30_000)
                page.locator("[data-testid=stPlotlyChart] .main-svg").first.wait_for(timeout=60_000)
                screenshot_all(page, ARTIFACTS / "live-training-mid-run.png")
            if title == "Overview":
                main.get_by_role("heading", name="Overview · mid").wait_for(timeout=60_000)
                main.get_by_text(re.compile(r"Run mid is still training \(now infected\)")).first.wait_for(timeout=30_000)
                screenshot_all(page, ARTIFACTS / "live-overview-mid-run.png")
            if title == "Case":
                screenshot_all(page, ARTIFACTS / "live-case-waiting.png")
            if title in ("New slice", "Scan"):  # open with the segmenter alone (dashboard.lesions_ui)
                main.get_by_role("heading", name=title).wait_for(timeout=60_000)
                main.get_by_text(re.compile(r"Upload (a slice|the files of one CT series)")).first.wait_for(
                    timeout=30_000)
            if title == "Data":
                main.get_by_role("heading", name="Data").wait_for(timeout=60_000)
                page.wait_for_function("() => document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')"
                                       ".length >= 14", timeout=120_000)
                screenshot_all(page, ARTIFACTS / "live-data-page.png")
            no_traceback(page, title)

        # the finished run: its Training page kept, the Data page with the segmenter's lesions and signs
        choose(page, "Run", "tiny")
        nav(page, "Training")
        main.get_by_text(re.compile(r"^Finished at")).first.wait_for(timeout=60_000)
        page.locator("[data-testid=stPlotlyChart] .main-svg").first.wait_for(timeout=60_000)
        no_traceback(page, "Training (finished)")
        screenshot_all(page, ARTIFACTS / "live-training-after.png")
        nav(page, "Data")
        main.get_by_text("Radiological signs", exact=False).first.wait_for(timeout=120_000)
        label = page.get_by_role("combobox", name="Label", exact=True)  # a COVID slice: lesions to show
        label.click()
        page.get_by_role("option", name="COVID", exact=True).click()
        page.keyboard.press("Escape")
        main.get_by_text(re.compile(r"^CT_COVID/")).first.wait_for(timeout=120_000)
        no_traceback(page, "Data (finished)")
        screenshot_all(page, ARTIFACTS / "live-data-page-lesions.png")
        assert not errors, errors
