"""The Scan page in a real browser (Debian's Chromium through Playwright, as tests/test_browser.py): a DICOM
series uploaded as loose files is scored; the page must show as many slices as files were uploaded and no
traceback; a slice that drives the decision opens in the Case view. Screenshots go to test-artifacts/
(git-ignored): browser-scan.png, browser-scan-case.png. A missing Chromium is a failure, not a skip.
"""
from __future__ import annotations

import re

import pytest
from test_browser import (
    ARTIFACTS,
    BOOT,
    browser_page,
    chromium_path,
    open_page,
    screenshot_all,
    streamlit_app,
    wait_idle,
)

from tests.dicom_series import write_series
from tests.phantom_series import dicom_series, right_lung_lesions

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a Streamlit server and Chromium; the pages' AppTests are fast
N = 12


def no_traceback(page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    assert "Traceback" not in page.locator("[data-testid=stMain]").inner_text()


def test_an_uploaded_series_keeps_every_slice(synthetic_run, tmp_path):
    files = write_series(tmp_path / "series", dicom_series(right_lung_lesions(N, size=128, seed=11)))
    ARTIFACTS.mkdir(exist_ok=True)
    chromium_path()
    with streamlit_app(synthetic_run.parent, ARTIFACTS / "browser-scan-streamlit.log", BOOT) as url, \
            browser_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        open_page(page, url, "scan")
        page.get_by_role("heading", name="Scan", exact=True).wait_for(timeout=60_000)
        page.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files([str(f) for f in files])
        main = page.locator("[data-testid=stMain]")
        count = main.get_by_text(re.compile(r"slices in the series, read from")).first
        count.wait_for(timeout=300_000)
        wait_idle(page, 300_000)
        text = count.inner_text()
        found = re.match(r"(\d+) slices in the series, read from (\d+) files? given", text)
        assert found, text
        assert (int(found[1]), int(found[2])) == (N, N)  # not a slice lost, every file counted
        main.get_by_text("Scan decision").first.wait_for(timeout=60_000)
        main.locator("[data-testid=stPlotlyChart] .main-svg").first.wait_for(timeout=60_000)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=60_000)
        no_traceback(page)
        screenshot_all(page, ARTIFACTS / "browser-scan.png")

        main.get_by_role("button", name="Open", exact=True).first.click()
        page.get_by_role("heading", name="Case view").wait_for(timeout=60_000)
        wait_idle(page)
        assert page.evaluate("location.pathname").endswith("/case")
        heading = main.locator("h3").first.inner_text()
        assert re.search(r" · slice \d+, -?\d+(\.\d+)? mm$", heading), heading
        main.get_by_text(re.compile(r"^crop box \[")).first.wait_for(timeout=60_000)
        no_traceback(page)
        screenshot_all(page, ARTIFACTS / "browser-scan-case.png")
        assert not errors, errors
