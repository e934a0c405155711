"""A one-slide case report: the slice, its maps and crops, every branch's probability, the verdict, the signs.

Pillow only (no plotting library): the report is a 16:9 canvas meant to be dropped on a slide, so
sizes are in slide pixels and no text is smaller than 24 px at 1920x1080. Inputs are plain
images and numbers, so the dashboard and scripts can build one without a run loaded.
"""
from __future__ import annotations

import io
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = (1920, 1080)
MARGIN = 40
INK, GREY, PAPER = (25, 25, 30), (95, 95, 105), (255, 255, 255)
# Bars on the COVID side of their branch's operating point red, the other side blue (the dashboard's palette).
BAR_COLOURS = {"COVID": (232, 96, 76), "non-COVID": (76, 155, 232)}
RIGHT, WRONG = (30, 130, 70), (190, 40, 40)
FOOTER = (140, 30, 30)
BODY_END = 845  # the panels and bars end here; the verdict, two lines of signs and the footer band follow
# Glyphs Pillow's default font lacks (they would print as boxes), and what stands in for them.
_PLAIN = str.maketrans({"—": "-", "–": "-", "≥": ">=", "≤": "<=", "±": "+/-"})


@lru_cache(maxsize=32)  # Pillow decodes the embedded font on every call
def _font(px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=px)  # Pillow >= 10.1: a scalable font, no font file to ship


def _text(d: ImageDraw.ImageDraw, xy, text: str, px: int, fill=INK, max_w: int | None = None, bold=False,
          anchor="la", min_px: int = 24) -> int:
    """Draw one line, shrinking it (not below min_px) then cutting it with an ellipsis to fit max_w.
    Returns the width drawn."""
    text, f = text.translate(_PLAIN), _font(px)
    while max_w and d.textlength(text, font=f) > max_w and px > min_px:
        px -= 2
        f = _font(px)
    while max_w and d.textlength(text, font=f) > max_w and len(text) > 2:
        text = text[:-2] + "…"
    d.text(xy, text, font=f, fill=fill, anchor=anchor, stroke_width=1 if bold else 0, stroke_fill=fill)
    return int(d.textlength(text, font=f))


def _wrap(d: ImageDraw.ImageDraw, text: str, px: int, max_w: int, lines: int = 2) -> list[str]:
    f, out, line = _font(px), [], ""
    text = text.translate(_PLAIN)
    for word in text.split():
        trial = f"{line} {word}".strip()
        if d.textlength(trial, font=f) <= max_w or not line:
            line = trial
        else:
            out.append(line)
            line = word
    out.append(line)
    if len(out) > lines:  # keep it to `lines`; the last one says it was cut
        out = out[:lines - 1] + [" ".join(out[lines - 1:])]
    return out


def _as_image(img) -> Image.Image | None:
    """PNG/JPEG bytes, a PIL image or an array -> RGB; None when it cannot be read (noted, not raised)."""
    try:
        if img is None:
            return None
        if isinstance(img, (bytes, bytearray)):
            img = Image.open(io.BytesIO(img))
            img.load()
        elif isinstance(img, np.ndarray):
            a = img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            img = Image.fromarray(a)
        return img.convert("RGB")
    except Exception:  # a broken stored map must not cost the whole report
        return None


def _panels(canvas, d, panels, box) -> list[str]:
    """Images in a grid of 4 columns inside box (x0, y0, x1, y1), captions under them. Returns the
    captions of the panels that could not be drawn."""
    x0, y0, x1, y1 = box
    shown, missing = [], []
    for img, caption in panels:
        im = _as_image(img)
        (shown if im is not None else missing).append((im, caption) if im is not None else caption)
    cols, gap, cap_h = 4, 20, 64
    side = min((x1 - x0 - gap * (cols - 1)) // cols, (y1 - y0) // 2 - cap_h - gap)
    for i, (im, caption) in enumerate(shown[:8]):
        cx, cy = x0 + (i % cols) * (side + gap), y0 + (i // cols) * (side + cap_h + gap)
        k = side / max(im.size)  # the stored maps are small (160-224 px): scaled up to the tile
        im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))),
                       Image.BICUBIC if k > 1 else Image.LANCZOS)
        d.rectangle([cx, cy, cx + side - 1, cy + side - 1], fill=(20, 20, 24))
        canvas.paste(im, (cx + (side - im.width) // 2, cy + (side - im.height) // 2))
        for j, line in enumerate(_wrap(d, caption, 24, side)):
            _text(d, (cx, cy + side + 4 + j * 28), line, 24, GREY, max_w=side)
    return missing + [c for _, c in shown[8:]]


def _bars(d, probs: dict, thresholds: dict, decision: str, reference: dict | None, box) -> None:
    """Horizontal bars of p(COVID) per branch, each with its operating point as a black tick."""
    x0, y0, x1, y1 = box
    _text(d, (x0, y0), "p(COVID) per branch", 36, bold=True)
    top, val_w = y0 + 60, 90
    bar_w = x1 - x0 - val_w
    row = min(100, (y1 - top - 80) // max(1, len(probs)))
    for i, (b, p) in enumerate(probs.items()):
        y = top + i * row
        t = thresholds.get(b, 0.5)
        label = f"{b}  (decision)" if b == decision else b
        _text(d, (x0, y), label, 28 if b == decision else 26, INK if b == decision else GREY, bold=b == decision,
              max_w=bar_w)
        by = y + 34
        bh = max(16, row - 50)
        d.rectangle([x0, by, x1 - val_w, by + bh - 1], fill=(238, 238, 242))  # the track: 0..1
        colour = BAR_COLOURS["COVID" if p >= t else "non-COVID"]
        if p > 0:
            d.rectangle([x0, by, x0 + round(p * bar_w) - 1, by + bh - 1], fill=colour)
        tx = x0 + round(t * bar_w)
        d.rectangle([tx - 2, by - 6, tx + 1, by + bh + 5], fill=INK)
        if reference is not None and b in reference and abs(reference[b] - p) > 5e-4:
            rx, cy = x0 + round(reference[b] * bar_w), by + bh // 2
            d.polygon([(rx, cy - 11), (rx + 11, cy), (rx, cy + 11), (rx - 11, cy)], fill=PAPER, outline=INK, width=3)
        _text(d, (x1 - val_w + 10, by + bh // 2), f"{p:.3f}", 26, INK, anchor="lm")
    ay = top + len(probs) * row + 4
    for v, anchor in ((0.0, "la"), (0.5, "ma"), (1.0, "ra")):
        _text(d, (x0 + round(v * bar_w), ay), f"{v:g}", 24, GREY, anchor=anchor)
    legend = "tick: the branch's operating point · red: COVID side · blue: non-COVID side" + \
        (" · diamond: stored, at the run's tau" if reference else "")
    for j, line in enumerate(_wrap(d, legend, 24, x1 - x0, 3)):
        _text(d, (x0, ay + 34 + j * 28), line, 24, GREY, max_w=x1 - x0)


def case_report(panels: Sequence[tuple[object, str]], probs: dict[str, float], decision_branch: str,
                thresholds: dict[str, float] | float, truth: str, prediction: str, verdict: str | None,
                run_name: str, key: str, tau: float, notice: str, *, reference: dict[str, float] | None = None,
                run_tau: float | None = None, subtitle: str = "", signs: str = "",
                size: tuple[int, int] = SIZE) -> Image.Image:
    """The report as an RGB image of `size` (laid out for 1920x1080).

    panels: (image, caption); image is PNG bytes, a PIL image, an array or None (None or an
    unreadable image is left out and named in a note). probs: branch -> p(COVID), in display order.
    thresholds: each branch's operating point (one float: the same for all). reference: the stored
    probabilities, marked where they differ from probs (a tau other than the run's, `run_tau`). signs: the
    slice's radiological signs in one line (dashboard.data_browser.signs_line), under the verdict."""
    if not isinstance(thresholds, dict):
        thresholds = {b: float(thresholds) for b in probs}
    W, H = SIZE
    canvas = Image.new("RGB", SIZE, PAPER)
    d = ImageDraw.Draw(canvas)
    # Header: what the slide is about, in two lines.
    d.rectangle([0, 0, W, 135], fill=(243, 243, 246))
    _text(d, (MARGIN, 22), f"Case report · {key}", 44, bold=True, max_w=1200)
    _text(d, (W - MARGIN, 28), f"run {run_name}", 30, GREY, anchor="ra", max_w=W - 1200 - 3 * MARGIN)
    p = probs.get(decision_branch)
    t = thresholds.get(decision_branch, 0.5)
    pred = (f"prediction {prediction} ({decision_branch}, p = {p:.3f}, operating point {t:.3f})" if p is not None
            else f"prediction {prediction}") + (" · correct" if truth == prediction else " · wrong")
    x = MARGIN + _text(d, (MARGIN, 86), f"truth {truth}", 34, INK, bold=True)
    x += _text(d, (x, 86), "  ·  " + pred, 34, RIGHT if truth == prediction else WRONG, bold=True,
               max_w=W - MARGIN - x - 400)
    moved = run_tau is not None and abs(run_tau - tau) > 1e-6
    _text(d, (W - MARGIN, 86), f"tau = {tau:.2f}" + (f" (run's {run_tau:.2f})" if moved else ""), 34, INK, anchor="ra")
    # Body: images on the left, bars on the right.
    missing = _panels(canvas, d, panels, (MARGIN, 160, 1180, BODY_END))
    if missing:
        _text(d, (MARGIN, BODY_END + 2), "Not shown: " + "; ".join(missing), 24, GREY, max_w=1180 - MARGIN)
    _bars(d, probs, thresholds, decision_branch, reference, (1250, 160, W - MARGIN, BODY_END))
    # The verdict and the signs, then the run and the notice.
    _text(d, (MARGIN, 884), f"Verdict: {verdict}" if verdict else "Verdict: no verdict recorded", 32,
          INK if verdict else GREY, bold=bool(verdict), max_w=W - 2 * MARGIN)
    if signs:
        for j, line in enumerate(_wrap(d, "Radiological signs: " + signs, 24, W - 2 * MARGIN)):
            _text(d, (MARGIN, 922 + 25 * j), line, 24, INK, max_w=W - 2 * MARGIN)
    d.rectangle([0, 975, W, H], fill=FOOTER)
    _text(d, (MARGIN, 1000), notice, 36, PAPER, bold=True, max_w=1100)
    if subtitle:
        _text(d, (W - MARGIN, 1006), subtitle, 26, PAPER, anchor="ra", max_w=W - 1100 - 3 * MARGIN)
    return canvas if size == SIZE else canvas.resize(size, Image.LANCZOS)


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def to_pdf(img: Image.Image) -> bytes:
    """One page; 144 dpi makes 1920x1080 a 13.33 x 7.5 inch page, a widescreen slide's size."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PDF", resolution=144.0)
    return buf.getvalue()
