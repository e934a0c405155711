"""The dashboard in a real browser: Debian's Chromium through Playwright (no browser download).

Starts `streamlit run dashboard/app.py` on a free 127.0.0.1 port against the synthetic run, hovers a
point of the WebGL 3D map and sees its hover card images, clicks it and lands on the Case view,
then moves the tau slider with the keyboard and sees the crop box change. Issue 11's flows: a second
run picked in the sidebar (Overview's difference table, the slice beside it on the Case view, the
"Does it look at the disease?" plots), and a reviewer's verdict saved on the Case view, found in the
database and filtered on in Margin review. Screenshots go to test-artifacts/ (git-ignored). A missing
Chromium is a failure, not a skip.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--disable-gpu-sandbox",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a Streamlit server and Chromium; the pages' AppTests are fast


def chromium_path() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed (expected /usr/bin/chromium): run `apt-get install -y chromium`; "
                    "the browser test drives Debian's Chromium and never downloads a browser", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(runs_dir: Path, log_path: Path, env: dict | None = None):
    """`streamlit run dashboard/app.py -- --runs runs_dir` on a free port (extra environment `env`);
    yields its URL; always stopped."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
                             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                             "--", "--runs", str(runs_dir)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"streamlit did not start in 90 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@contextmanager
def browser_page(width: int = 1440, height: int = 1100):
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def wait_idle(page, timeout: float = 120_000) -> None:
    """Until Streamlit's 'running' indicator is gone (the script run finished)."""
    page.wait_for_timeout(400)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout)
    page.wait_for_timeout(300)


def open_page(page, url: str, path: str = "") -> None:
    page.goto(f"{url}/{path}")
    page.get_by_text("Research use only").first.wait_for(timeout=120_000)
    wait_idle(page)


def map_frame(page, settle_ms: int = 1000):
    """The 3D map component's iframe, once plotly has drawn it and the browser painted two frames since;
    `settle_ms`: a pause after that before the mouse is used (0: none, what bench.first_visit times)."""
    el = page.locator('iframe[title*="scatter3d"]').first
    el.wait_for(timeout=120_000)
    el.scroll_into_view_if_needed()
    frame = el.element_handle().content_frame()
    frame.locator("body[data-rendered]").wait_for(state="attached", timeout=120_000)
    frame.wait_for_function("() => window.__scatter3d && window.__scatter3d.gd._fullLayout.scene._scene", timeout=60_000)
    frame.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    if settle_ms:
        page.wait_for_timeout(settle_ms)
    return el, frame


def hover_point(page, el, frame, i: int) -> tuple[float, float] | None:
    """Move the real mouse onto point i (projected through plotly's own camera). Returns the page
    position when the hover card appeared, else None."""
    box = el.bounding_box()
    q = frame.evaluate(f"window.__scatter3d.project({i})")
    x, y = box["x"] + q["x"], box["y"] + q["y"]
    for dx, dy in ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1)):
        page.mouse.move(x + dx - 30, y + dy - 30)
        page.mouse.move(x + dx, y + dy, steps=6)
        try:
            frame.locator("#card img").first.wait_for(state="visible", timeout=1500)
            return x + dx, y + dy
        except Exception:
            continue
    return None


TAU_LABEL = "tau (Eq. 2 threshold)"  # dashboard/ui.py's tau slider


def test_map_hover_click_case_and_tau(synthetic_run):
    run_scenario(synthetic_run)


def run_scenario(run_path: Path) -> str:
    """Map hover -> click -> Case view -> tau slider, on the run at run_path. Returns how hovering worked."""
    ARTIFACTS.mkdir(exist_ok=True)
    chromium_path()
    with streamlit_app(run_path.parent, ARTIFACTS / "browser-streamlit.log") as url, browser_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        open_page(page, url, "map")
        el, frame = map_frame(page)
        assert frame.evaluate("window.__scatter3d.count()") >= 10

        # Hover: the real mouse on the projected position of a point. It works with SwiftShader
        # WebGL (plotly picks the point from its pick buffer); should picking ever fail, fall back
        # to the component's synthetic hover so the card itself is still checked.
        pos = None
        for i in range(3):
            pos = hover_point(page, el, frame, i)
            if pos:
                break
        real_mouse = pos is not None
        if not real_mouse:
            frame.evaluate("window.__scatter3d.hover(0)")
        card = frame.locator("#card")
        card.wait_for(state="visible", timeout=5000)
        imgs = card.locator("img")
        assert imgs.count() == 3
        for k in range(3):
            assert imgs.nth(k).get_attribute("src").startswith("data:image/")
            assert imgs.nth(k).evaluate("img => img.complete && img.naturalWidth > 0")
        index = frame.evaluate("window.__scatter3d.cardIndex()")
        key = frame.evaluate(f"window.__scatter3d.keyOf({index})")
        assert key in card.inner_text()
        page.screenshot(path=str(ARTIFACTS / "browser-map-hover.png"))

        # Click the hovered point: the Case view opens on it.
        if real_mouse:
            # plotly's gl3d click needs the button held across a frame, as a person's click does
            page.mouse.click(*pos, delay=120)
        else:
            frame.evaluate(f"window.__scatter3d.click({index})")
        page.get_by_role("heading", name="Case view").wait_for(timeout=60_000)
        assert page.evaluate("location.pathname").endswith("/case")
        wait_idle(page)
        page.locator("code", has_text=key).first.wait_for(timeout=60_000)

        # Tau: keyboard arrows on the slider; the crop box text follows.
        crop = page.locator("p", has_text=re.compile(r"^crop box \[")).first
        crop.wait_for(timeout=60_000)
        before = crop.inner_text()
        tau_box = page.locator("[data-testid=stSlider]").filter(has_text=TAU_LABEL)  # the sidebar has a slider too
        slider = tau_box.locator("input[type=range]").first
        slider.scroll_into_view_if_needed()
        assert float(slider.evaluate("e => e.value")) == pytest.approx(0.75)
        slider.focus()
        for _ in range(40):  # 0.75 -> 0.35
            page.keyboard.press("ArrowLeft")
        page.wait_for_function("v => { const s = [...document.querySelectorAll('[data-testid=stSlider]')]"
                               ".find(e => e.innerText.includes('tau (Eq. 2'))?.querySelector('input[type=range]');"
                               " return s && Math.abs(Number(s.value) - v) < 1e-6; }", arg=0.35, timeout=10_000)
        page.wait_for_function("t => { const p = [...document.querySelectorAll('p')].find(e => e.innerText.startsWith('crop box ['));"
                               " return p && p.innerText !== t; }", arg=before, timeout=60_000)
        wait_idle(page)
        after = crop.inner_text()
        assert after != before
        assert re.search(r"\[\d\.\d{3}, \d\.\d{3}, \d\.\d{3}, \d\.\d{3}\]", after)
        page.get_by_text("live, tau=0.35").first.wait_for(state="attached", timeout=30_000)  # the table header
        page.screenshot(path=str(ARTIFACTS / "browser-case-tau.png"), full_page=True)
        assert not errors, errors
        how = f"hover by {'real mouse' if real_mouse else 'synthetic event'}; {before!r} -> {after!r}"
        print(how)
        return how


# --- Issue 11: a second run in the sidebar, and reviewers' verdicts -------------------------------

@pytest.fixture(scope="module")
def compare_runs(synthetic_run, phantom_root, module_scratch) -> Path:
    """runs/tiny-a: the synthetic run; runs/tiny-b: a copy whose fusion probabilities on the test split
    are flipped (p -> 1 - p, so decisions change). Both shortcut-audited on the phantoms. Returns the
    runs folder; tiny-a is the newest run (the one the sidebar opens on)."""
    import contextlib
    import io

    import pandas as pd

    from train import shortcut

    root = module_scratch("browser-compare")
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(synthetic_run, root / name)
        for f in ("shortcut.json", "shortcut.csv", "fidelity.csv"):
            (root / name / f).unlink(missing_ok=True)
    pred = pd.read_csv(root / "tiny-b" / "predictions.csv", keep_default_na=False)
    flip = pred.split == "test"
    pred.loc[flip, "p_fusion"] = 1 - pred.loc[flip, "p_fusion"].astype(float)
    pred.to_csv(root / "tiny-b" / "predictions.csv", index=False)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the audit
        for name in ("tiny-b", "tiny-a"):
            shortcut.run(argparse.Namespace(run=str(root / name), data_root=str(phantom_root), limit=None,
                                            tolerance_px=15.0, external_split="test", device="cpu",
                                            no_progress=True))
    now = time.time()
    os.utime(root / "tiny-b", (now - 60, now - 60))
    os.utime(root / "tiny-a", (now, now))
    return root


BOOT = {"COVID_LAB_BOOT": "40"}  # fewer bootstrap resamples for the metric intervals


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label` (a combobox: open it, click the option)."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)
    assert box.input_value() == option


def nav(page, title: str) -> None:
    """Open a page from the sidebar navigation (same session: the sidebar choices stay)."""
    page.locator("[data-testid=stSidebarNav] a").filter(
        has=page.get_by_text(title, exact=True)).first.click()
    wait_idle(page)


def screenshot_all(page, path: Path) -> None:
    """The whole app, not only the viewport: Streamlit scrolls inside its own container, so
    full_page alone stops at the window; make the window as tall as the content for one shot."""
    wait_idle(page)
    size = page.viewport_size
    height = page.evaluate("() => Math.max(...['[data-testid=stMain]', '[data-testid=stAppViewContainer]',"
                           " '[data-testid=stMainBlockContainer]'].map(s => document.querySelector(s))"
                           ".filter(Boolean).map(e => e.scrollHeight))")
    page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height + 40), 12000)})
    page.wait_for_timeout(1500)  # charts re-lay out
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
        page.wait_for_timeout(300)


def plot_legend(page, chart) -> list[str]:
    return [t.strip() for t in chart.locator(".legendtext").all_text_contents()]


@contextmanager
def run_session(runs: Path, log_name: str, path: str = "", run: str = "tiny-a"):
    """A served dashboard over `runs` and a browser page on `path` with `run` picked in the sidebar.
    Yields (page, errors): the page's JavaScript errors, for the test to assert on."""
    ARTIFACTS.mkdir(exist_ok=True)
    chromium_path()
    with streamlit_app(runs, ARTIFACTS / log_name, BOOT) as url, browser_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        open_page(page, url, path)
        choose(page, "Run", run)
        yield page, errors


def test_compare_runs_overview_case_and_disease(compare_runs):
    """Sidebar "Compare with" tiny-b: Overview's two tables and their difference, the slice beside
    tiny-b on the Case view, and the shortcut audit of both runs on "Does it look at the disease?"."""
    from playwright.sync_api import expect

    with run_session(compare_runs, "browser-compare-streamlit.log") as (page, errors):
        choose(page, "Compare with", "tiny-b")

        # Overview: per split, tiny-a's table, tiny-b's table and the difference
        main = page.locator("[data-testid=stMain]")
        page.get_by_role("heading", name="Overview · tiny-a").wait_for(timeout=60_000)
        main.get_by_text("Compared with tiny-b", exact=False).first.wait_for(timeout=60_000)
        diff = main.get_by_text("Difference · tiny-b minus tiny-a")
        expect(diff).to_have_count(2, timeout=60_000)  # val and test
        for name in ("tiny-a", "tiny-b"):
            # the column headings over the two runs' tables
            expect(main.locator("[data-testid=stColumn]").get_by_text(name, exact=True)).to_have_count(2)
        for split in ("val", "test"):
            expect(main.get_by_role("heading", name=re.compile(rf"^{split} · \d+ slices"))).to_be_visible()
        main.get_by_role("heading", name="Beside the paper").wait_for(timeout=60_000)
        # 3 tables per split (a, b, difference), then the paper's and this run's beside it (more further down)
        assert main.locator("[data-testid=stDataFrame]").count() >= 8
        for label in diff.all():  # each "Difference" label has its table right below it
            table = label.locator("xpath=following::*[@data-testid='stDataFrame'][1]")
            expect(table).to_be_visible()
        screenshot_all(page, ARTIFACTS / "browser-compare-overview.png")

        # Case view: the first test slice beside tiny-b, one bar per run in the probability chart
        nav(page, "Case")
        page.get_by_role("heading", name="Case view").wait_for(timeout=60_000)
        assert page.evaluate("location.pathname").endswith("/case")
        beside = page.get_by_role("heading", name="Beside tiny-b")
        beside.wait_for(timeout=60_000)
        beside.scroll_into_view_if_needed()
        decision = main.get_by_text(re.compile(r"tiny-b decides (COVID|non-COVID) \(p = \d\.\d{3}"))
        decision.first.wait_for(timeout=30_000)
        assert re.search(r"the decision changed|the same decision", decision.first.inner_text())
        chart = main.locator(".st-key-compare_probs [data-testid=stPlotlyChart]")
        if not chart.count():  # the keyed container's class is a Streamlit detail: fall back to position
            chart = beside.locator("xpath=following::*[@data-testid='stPlotlyChart'][1]")
        chart.locator(".main-svg").first.wait_for(timeout=60_000)
        assert chart.first.is_visible()
        assert plot_legend(page, chart.first) == ["tiny-a", "tiny-b"]
        assert chart.first.locator("g.trace.bars").count() == 2
        images = main.locator("[data-testid=stImage] img")
        for name in ("tiny-a", "tiny-b"):
            main.get_by_text(f"{name} · attention map + tau box").first.wait_for(timeout=30_000)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        assert images.count() >= 9  # the slice, then 4 maps per run
        page.evaluate("() => document.querySelectorAll('h3').forEach(h => { if (h.innerText.startsWith('Beside'))"
                      " h.scrollIntoView({block: 'start'}); })")
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "browser-compare-case.png"))

        # Does it look at the disease? Three plots, one trace per run each
        nav(page, "Does it look at the disease?")
        page.get_by_role("heading", name="Does it look at the disease?").wait_for(timeout=60_000)
        main.get_by_text("Comparison run: tiny-b", exact=False).first.wait_for(timeout=30_000)
        plots = main.locator("[data-testid=stPlotlyChart]")
        plots.nth(2).locator(".main-svg").first.wait_for(timeout=60_000)
        assert plots.count() == 3  # no fidelity table measured
        for i in range(3):
            plots.nth(i).scroll_into_view_if_needed()
            assert plots.nth(i).is_visible()
            assert plot_legend(page, plots.nth(i)) == ["tiny-a", "tiny-b"]
        for n in ("1", "2", "3"):
            assert main.get_by_role("heading", name=re.compile(rf"^{n} · ")).is_visible()
        assert main.get_by_text(re.compile(r"^tiny-b · With the lungs blanked")).count() == 1
        screenshot_all(page, ARTIFACTS / "browser-disease.png")
        assert not errors, errors


def test_verdict_saved_and_filtered_in_margin_review(compare_runs):
    """Case view: a reviewer saves "attention outside the lungs" with a note; it shows as the verdict in
    force and is the newest row in the SQLite store; Margin review filtered on it shows that slice only."""
    from core.runs.verdicts import VERDICTS, VerdictStore

    verdict = "attention outside the lungs"
    assert verdict in VERDICTS
    reviewer, note = "Dr Browser Test", "map peak on the table edge, below the lungs"
    with run_session(compare_runs, "browser-verdict-streamlit.log", "case") as (page, errors):
        main = page.locator("[data-testid=stMain]")
        page.get_by_role("heading", name="Case view").wait_for(timeout=60_000)
        key = main.locator("h3 code").first.inner_text().strip()
        assert key.endswith(".png")
        assert key not in VerdictStore.in_runs(compare_runs).latest("tiny-a")

        form = main.locator("[data-testid=stForm]")
        form.scroll_into_view_if_needed()
        main.get_by_text("No verdict yet for this slice in this run.").wait_for(timeout=30_000)
        form.get_by_role("radio", name=verdict, exact=True).check(force=True)  # the input sits under its label
        form.get_by_label("Note", exact=True).fill(note)
        form.get_by_label("Reviewer", exact=True).fill(reviewer)
        form.get_by_role("button", name="Save verdict").click()
        wait_idle(page)

        main.get_by_text("Verdict saved.", exact=True).wait_for(timeout=30_000)
        in_force = main.get_by_text(re.compile(r"^Verdict in force: "))
        in_force.wait_for(timeout=30_000)
        assert f"{verdict} · by {reviewer} ·" in in_force.inner_text()
        main.locator("[data-testid=stCaptionContainer]").get_by_text(note, exact=True).wait_for(timeout=30_000)
        main.get_by_text("history (1)").wait_for(timeout=30_000)
        row = VerdictStore.in_runs(compare_runs).latest("tiny-a")[key]
        assert (row["verdict"], row["note"], row["reviewer"], row["source"]) == (verdict, note, reviewer, "reviewer")
        main.get_by_text("Verdict saved.", exact=True).scroll_into_view_if_needed()
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "browser-verdict-saved.png"))

        # Margin review, filtered on that verdict: that slice only
        nav(page, "Margin review")
        page.get_by_role("heading", name="Margin review").wait_for(timeout=60_000)
        count = main.locator("strong", has_text=re.compile(r"^\d+ cases$")).first
        count.wait_for(timeout=30_000)
        total = int(count.inner_text().split()[0])
        assert total > 1
        picker = page.get_by_role("combobox", name="Reviewer's verdict", exact=True)
        picker.click()
        page.get_by_role("option", name=verdict, exact=True).click()
        page.keyboard.press("Escape")
        wait_idle(page)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stMain] strong')]"
                               ".some(e => e.innerText === '1 case')", timeout=60_000)
        assert main.get_by_text(re.compile(rf"^1 case \(of {total}\)$")).count() == 1
        cards = main.get_by_role("button", name="Open case")
        assert cards.count() == 1
        main.get_by_text(re.compile(rf"^{re.escape(key.split('/')[-1])} · ")).wait_for(timeout=10_000)
        main.get_by_text(f"verdict: {verdict}", exact=True).wait_for(timeout=10_000)
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "browser-verdict-filter.png"))

        # and the card opens that slice in the Case view
        cards.first.click()
        page.get_by_role("heading", name="Case view").wait_for(timeout=60_000)
        wait_idle(page)
        assert main.locator("h3 code").first.inner_text().strip() == key
        assert not errors, errors
