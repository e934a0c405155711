"""The dashboard in a real browser: Debian's Chromium through Playwright (no browser download).

Starts `streamlit run dashboard/app.py` on a free 127.0.0.1 port against the synthetic run, hovers a
point of the WebGL 3D map and sees its hover card images, clicks it and lands on the Case view,
then moves the tau slider with the keyboard and sees the crop box change. Screenshots go to
test-artifacts/ (git-ignored). A missing Chromium is a failure, not a skip.
"""
from __future__ import annotations

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

pytestmark = pytest.mark.browser


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
def streamlit_app(runs_dir: Path, log_path: Path):
    """`streamlit run dashboard/app.py -- --runs runs_dir` on a free port; yields its URL; always stopped."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
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


def map_frame(page):
    """The 3D map component's iframe, once plotly has drawn it."""
    el = page.locator('iframe[title*="scatter3d"]').first
    el.wait_for(timeout=120_000)
    el.scroll_into_view_if_needed()
    frame = el.element_handle().content_frame()
    frame.locator("body[data-rendered]").wait_for(state="attached", timeout=120_000)
    frame.wait_for_function("() => window.__scatter3d && window.__scatter3d.gd._fullLayout.scene._scene", timeout=60_000)
    page.wait_for_timeout(1000)  # first WebGL frame
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
        slider = page.locator("[data-testid=stSlider] input[type=range]").first
        slider.scroll_into_view_if_needed()
        assert float(slider.evaluate("e => e.value")) == pytest.approx(0.75)
        slider.focus()
        for _ in range(40):  # 0.75 -> 0.35
            page.keyboard.press("ArrowLeft")
        page.wait_for_function("v => { const s = document.querySelector('[data-testid=stSlider] input[type=range]');"
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
