"""A member's calibration chart as PNG bytes, for `/mystats` (a Discord attachment such as calibration.png).

render_calibration_chart(buckets, title) -> bytes | None
- buckets: MemberStats.calibration, the bot.core.scoring.Bucket list (50-59 ... 90-99). Each non-empty bucket is
  one marker at (mean stated confidence, share right); its area grows with the count and it is labelled n=....
  Empty buckets are omitted.
- title: drawn as given (untrusted text, e.g. a display name): folded to what the font can draw and truncated
  with "…" to fit. It is pixels, so no escaping is needed.
- Returns None when no bucket has a settled prediction: the caller then sends text only (no empty image).

The image is 640x400, opaque and light, so it reads the same in Discord's dark and light themes. It is drawn at
2x and downscaled, which smooths circles and lines (Pillow draws them without anti-aliasing). Only Pillow's
built-in font is used, never a system font, so output depends on nothing but the Pillow version: the same input
gives the same bytes.
"""

from __future__ import annotations

import functools
import io
import math
import unicodedata
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from bot.core.scoring import Bucket

WIDTH, HEIGHT = 640, 400
X_MIN, X_MAX = 50, 100  # stated confidence, %
Y_MIN, Y_MAX = 0, 100  # observed share right, %
MAX_TITLE_CHARS = 200  # bounds the work spent measuring a hostile title

_SCALE = 2  # drawing happens at 2x, then is downscaled (anti-aliasing)
# The plot frame in output pixels: room above for the title, left and below for ticks and axis labels. The
# axes' ranges sit _PAD inside it, so a marker at 50 % or 100 % stays clear of the tick labels.
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, WIDTH - 20, 70, HEIGHT - 50
_PAD = 14

BACKGROUND = (255, 255, 255)
PLOT_BACKGROUND = (247, 248, 250)
GRID = (222, 225, 230)
AXIS = (110, 116, 125)
TEXT = (32, 34, 37)
MUTED = (100, 106, 115)
REGION = (185, 190, 198)  # the over/underconfident hints, faint so markers stand out
DIAGONAL = (140, 146, 155)
MARKER = (88, 101, 242)  # Discord blurple
MARKER_EDGE = (40, 50, 160)


def render_calibration_chart(buckets: Sequence[Bucket], title: str) -> bytes | None:
    """The chart as PNG bytes, or None when there is no settled prediction to draw."""
    shown = [b for b in buckets if b.count > 0]
    if not shown:
        return None
    image = Image.new("RGB", (WIDTH * _SCALE, HEIGHT * _SCALE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    _draw_header(draw, title, shown)
    _draw_frame(draw)
    _draw_axis_labels(image, draw)
    for bucket in shown:
        _draw_bucket(draw, bucket)
    image = image.resize((WIDTH, HEIGHT), Image.Resampling.BOX)  # BOX: exact 2x2 averaging, fast
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)  # optimize=True costs ~10x the time for a few % of size
    return out.getvalue()


def plot_position(confidence: float, share_right: float) -> tuple[int, int]:
    """Output-pixel position of a point at `confidence` % stated (50-100) and `share_right` (0-1) observed.
    Values outside the axes are clamped onto them."""
    left, right, top, bottom = _LEFT + _PAD, _RIGHT - _PAD, _TOP + _PAD, _BOTTOM - _PAD
    x = left + (_clamp(confidence, X_MIN, X_MAX) - X_MIN) / (X_MAX - X_MIN) * (right - left)
    y = bottom - (_clamp(share_right * 100, Y_MIN, Y_MAX) - Y_MIN) / (Y_MAX - Y_MIN) * (bottom - top)
    return round(x), round(y)


def marker_radius(count: int) -> float:
    """Output pixels. Grows with sqrt(count) (area ~ count) and is capped so a busy bucket stays on the chart."""
    return min(14.0, 5.0 + 2.0 * math.sqrt(count))


# ---- drawing (canvas units: output pixels x _SCALE) ----------------------------------------------


def _draw_header(draw: ImageDraw.ImageDraw, title: str, shown: Sequence[Bucket]) -> None:
    font = _font(18)
    text = fit_text(title, font, (WIDTH - 32) * _SCALE)
    draw.text((16 * _SCALE, 12 * _SCALE), text, font=font, fill=TEXT)
    total, right = sum(b.count for b in shown), sum(b.correct for b in shown)
    noun = "prediction" if total == 1 else "predictions"
    share = 100 * right // total  # rounded down: "100% right" only when none was wrong
    subtitle = (f"{total} settled {noun}, {share}% right"
                "  ·  dashed line: perfectly calibrated  ·  marker size: n")
    draw.text((16 * _SCALE, 40 * _SCALE), subtitle, font=_font(12), fill=MUTED)


def _draw_frame(draw: ImageDraw.ImageDraw) -> None:
    """Plot background, gridlines with tick labels, region hints, the diagonal, then the axes on top."""
    s = _SCALE
    draw.rectangle((_LEFT * s, _TOP * s, _RIGHT * s, _BOTTOM * s), fill=PLOT_BACKGROUND)
    tick_font = _font(12)
    for pct in range(X_MIN, X_MAX + 1, 10):
        x, _ = plot_position(pct, 0)
        draw.line((x * s, _TOP * s, x * s, _BOTTOM * s), fill=GRID, width=s)
        draw.text((x * s, (_BOTTOM + 8) * s), f"{pct}%", font=tick_font, fill=MUTED, anchor="mt")
    for pct in range(Y_MIN, Y_MAX + 1, 10):
        _, y = plot_position(X_MIN, pct / 100)
        draw.line((_LEFT * s, y * s, _RIGHT * s, y * s), fill=GRID, width=s)
        if pct % 20 == 0:  # every other label: 10 % steps are only ~25 px apart
            draw.text(((_LEFT - 8) * s, y * s), f"{pct}%", font=tick_font, fill=MUTED, anchor="rm")
    # Which side of the diagonal is which, placed well inside each side, away from the corners a marker of a
    # very cautious or very bold member would take. Markers are drawn later, over them.
    for text, confidence, share in (("underconfident", 62, 0.80), ("overconfident", 86, 0.25)):
        hx, hy = plot_position(confidence, share)
        draw.text((hx * s, hy * s), text, font=_font(12), fill=REGION, anchor="mm")
    _dashed_line(draw, plot_position(X_MIN, X_MIN / 100), plot_position(X_MAX, X_MAX / 100))
    draw.line((_LEFT * s, _TOP * s, _LEFT * s, _BOTTOM * s), fill=AXIS, width=s)
    draw.line((_LEFT * s, _BOTTOM * s, _RIGHT * s, _BOTTOM * s), fill=AXIS, width=s)


def _dashed_line(draw: ImageDraw.ImageDraw, start: tuple[int, int], end: tuple[int, int],
                 dash: float = 8, gap: float = 5) -> None:
    """Pillow has no dashed lines: draw the segments."""
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    s, t = _SCALE, 0.0
    while t < length:
        u = min(t + dash, length)
        draw.line(((x0 + ux * t) * s, (y0 + uy * t) * s, (x0 + ux * u) * s, (y0 + uy * u) * s),
                  fill=DIAGONAL, width=2 * s)
        t = u + gap


def _draw_axis_labels(image: Image.Image, draw: ImageDraw.ImageDraw) -> None:
    s, font = _SCALE, _font(13)
    draw.text((((_LEFT + _RIGHT) / 2) * s, (HEIGHT - 10) * s), "stated confidence", font=font, fill=TEXT,
              anchor="mb")
    # Vertical text: draw it on a strip, rotate the strip, paste it with itself as the mask.
    label = "observed share right"
    box = font.getbbox(label, anchor="lt")
    strip = Image.new("L", (box[2] + 2, box[3] + 2), 0)
    ImageDraw.Draw(strip).text((1, 1), label, font=font, fill=255, anchor="lt")
    strip = strip.rotate(90, expand=True)
    x = 10 * s
    y = round(((_TOP + _BOTTOM) / 2) * s - strip.height / 2)
    image.paste(Image.new("RGB", strip.size, TEXT), (x, y), strip)


def _draw_bucket(draw: ImageDraw.ImageDraw, bucket: Bucket) -> None:
    """One marker at (mean stated confidence, share right), labelled n=count above it (below if no room)."""
    s = _SCALE
    confidence = bucket.mean_confidence if bucket.mean_confidence is not None else (bucket.low + bucket.high) / 2
    x, y = plot_position(confidence, bucket.correct / bucket.count)
    r = marker_radius(bucket.count)
    draw.ellipse(((x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s), fill=MARKER, outline=MARKER_EDGE,
                 width=s)
    font = _font(12)
    label = f"n={bucket.count}"
    above = y - r - 4 - 14 >= _TOP
    ly = (y - r - 4) if above else (y + r + 4)
    draw.text((x * s, ly * s), label, font=font, fill=TEXT, anchor="mb" if above else "mt")


# ---- text ----------------------------------------------------------------------------------------


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in font (Aileron, a Latin subset) at `size` output pixels; cached, parsing it costs."""
    return ImageFont.load_default(size=size * _SCALE)


def fit_text(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    """`text` made drawable in `font` (see drawable_text) and cut with "…" so it is at most max_width wide."""
    # Cut before and after folding: bounds the work on a huge title (folding drops some characters).
    text = drawable_text(str(text)[:4 * MAX_TITLE_CHARS])[:MAX_TITLE_CHARS]
    if font.getlength(text) <= max_width:
        return text
    lo, hi = 0, len(text)  # binary search: the longest prefix that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid].rstrip() + "…") <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…"


def drawable_text(text: str) -> str:
    """One line the built-in font can draw: line breaks and controls become spaces, invisible format
    characters (bidi overrides, zero-width joiners) and lone surrogates go, accents the font lacks are dropped
    (é -> e, via NFKD), and any other character it lacks becomes "?" instead of an empty box."""
    out = []
    for ch in str(text):
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp", "Zs"):
            out.append(" ")
        elif category in ("Cf", "Cs"):
            continue
        elif _has_glyph(ch):
            out.append(ch)
        else:
            out.append(_fold(ch))
    return " ".join("".join(out).split())


def _fold(ch: str) -> str:
    kept = [c for c in unicodedata.normalize("NFKD", ch) if _has_glyph(c) and not unicodedata.combining(c)]
    return "".join(kept) if kept and len(kept) <= 4 else "?"  # a ligature may expand; a whole phrase, no


@functools.lru_cache(maxsize=4096)
def _has_glyph(ch: str) -> bool:
    """Whether the built-in font has a glyph for ch: a missing one renders as the .notdef box."""
    return ch == " " or _glyph_pixels(ch) != _glyph_pixels("\uffff")  # U+FFFF: a noncharacter, never mapped


@functools.lru_cache(maxsize=4096)
def _glyph_pixels(ch: str) -> bytes:
    tile = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(tile).text((8, 8), ch, font=_font(12), fill=255)
    return tile.tobytes()


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
