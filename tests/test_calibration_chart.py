"""The /mystats calibration chart: a valid, deterministic PNG, markers where the data says, any title drawable."""

from __future__ import annotations

import io
import math
from collections import Counter

import pytest
from PIL import Image

from bot.core.scoring import Bucket, Forecast, calibration_of, tally
from bot.render.calibration_chart import (
    BACKGROUND, HEIGHT, MARKER, WIDTH, drawable_text, fit_text, marker_radius, plot_position,
    render_calibration_chart,
)
from bot.render.calibration_chart import _font as chart_font

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def counts(confidence: int, right: int, wrong: int) -> Counter[Forecast]:
    """`right` + `wrong` predictions of "loads" at this confidence, tallied (tallies add up with +)."""
    return tally([Forecast(True, confidence, True)] * right + [Forecast(True, confidence, False)] * wrong)


def open_png(data: bytes) -> Image.Image:
    assert data[:8] == PNG_SIGNATURE
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes all of it: a truncated or corrupt file fails here
    return image


def marker_pixels(image: Image.Image) -> list[tuple[int, int]]:
    """Pixels exactly the marker fill colour (anti-aliased edges blend, so only marker interiors match)."""
    pixels = image.load()
    return [(x, y) for y in range(image.height) for x in range(image.width) if pixels[x, y] == MARKER]


MIXED = calibration_of(counts(55, 2, 2) + counts(74, 5, 4) + counts(84, 18, 2) + counts(96, 7, 0))


def test_a_valid_opaque_png_of_the_stated_size():
    image = open_png(render_calibration_chart(MIXED, "Calibration of ada"))
    assert image.format == "PNG"
    assert image.size == (WIDTH, HEIGHT) == (640, 400)
    assert image.mode == "RGB"  # no alpha: the same card on Discord's dark and light themes
    assert image.getpixel((0, 0)) == BACKGROUND
    assert image.getpixel((WIDTH - 1, HEIGHT - 1)) == BACKGROUND


def test_modest_size():
    assert len(render_calibration_chart(MIXED, "Calibration of ada")) < 100_000


def test_deterministic():
    a = render_calibration_chart(MIXED, "Calibration of ada")
    b = render_calibration_chart(list(MIXED), "Calibration of ada")
    assert a == b
    assert render_calibration_chart(MIXED, "Calibration of bob") != a
    assert render_calibration_chart(calibration_of(counts(96, 6, 1)), "Calibration of ada") != a


@pytest.mark.parametrize("buckets", [
    [],
    calibration_of(tally([])),  # five empty buckets
    [Bucket(90, 99, 0, 0, None)],
])
def test_nothing_settled_is_none(buckets):
    assert render_calibration_chart(buckets, "Calibration of ada") is None


def test_a_single_prediction_is_drawn():
    image = open_png(render_calibration_chart(calibration_of(counts(50, 0, 1)), "x"))
    x, y = plot_position(50, 0.0)
    assert image.getpixel((x, y)) == MARKER


def test_marker_at_90s_bucket_all_right():
    data = render_calibration_chart(calibration_of(counts(95, 10, 0)), "Calibration of ada")
    image = open_png(data)
    x, y = plot_position(95, 1.0)
    assert image.getpixel((x, y)) == MARKER
    # the only marker there is: every marker-coloured pixel lies inside that disc
    r = marker_radius(10)
    found = marker_pixels(image)
    assert found and all(math.hypot(px - x, py - y) <= r + 1 for px, py in found)
    # and nothing where a 0 %-right marker would be, nor in the empty buckets
    assert image.getpixel(plot_position(95, 0.0)) != MARKER
    assert image.getpixel(plot_position(75, 0.75)) != MARKER


def test_marker_follows_the_data():
    """The same position is plot background when that bucket is elsewhere or absent."""
    x, y = plot_position(95, 1.0)
    half_right = open_png(render_calibration_chart(calibration_of(counts(95, 5, 5)), "t"))
    assert half_right.getpixel((x, y)) != MARKER
    assert half_right.getpixel(plot_position(95, 0.5)) == MARKER
    other_bucket = open_png(render_calibration_chart(calibration_of(counts(55, 3, 0)), "t"))
    assert other_bucket.getpixel((x, y)) != MARKER
    assert other_bucket.getpixel(plot_position(55, 1.0)) == MARKER


def test_x_is_the_mean_stated_confidence_not_the_band_start():
    image = open_png(render_calibration_chart(calibration_of(counts(99, 4, 0)), "t"))
    assert image.getpixel(plot_position(99, 1.0)) == MARKER
    assert image.getpixel(plot_position(90, 1.0)) != MARKER


def test_one_marker_per_non_empty_bucket():
    image = open_png(render_calibration_chart(MIXED, "t"))
    shown = [b for b in MIXED if b.count]
    assert len(shown) == 4
    for b in shown:
        assert image.getpixel(plot_position(b.mean_confidence, b.hit_rate)) == MARKER, b
    # markers are the only blurple: every such pixel belongs to one of them
    centres = [(plot_position(b.mean_confidence, b.hit_rate), marker_radius(b.count)) for b in shown]
    for px, py in marker_pixels(image):
        assert any(math.hypot(px - cx, py - cy) <= r + 1 for (cx, cy), r in centres), (px, py)


def test_marker_area_grows_with_count():
    few = open_png(render_calibration_chart(calibration_of(counts(75, 1, 0)), "t"))
    many = open_png(render_calibration_chart(calibration_of(counts(75, 30, 0)), "t"))
    assert len(marker_pixels(many)) > 2 * len(marker_pixels(few)) > 0


def test_the_chart_is_drawn_on_the_axes_ranges():
    # the corners of the axes map inside the image and in the right order
    x50, y0 = plot_position(50, 0.0)
    x100, y100 = plot_position(100, 1.0)
    assert 0 < x50 < x100 < WIDTH and 0 < y100 < y0 < HEIGHT
    assert plot_position(75, 0.5) == (round((x50 + x100) / 2), round((y0 + y100) / 2))
    assert plot_position(200, 2.0) == (x100, y100)  # clamped: a bad value stays on the chart


@pytest.mark.parametrize("title", [
    "W" * 5000,
    "日本語の名前 🎉🎉🎉 مرحبا",
    "\u202eevil\u202c\n\r\t\x00name\u200d",
    "x\ud800y",  # a lone surrogate, as a str can hold
    "\U0010ffff\ufeff\u0301",
    "",
    "   ",
    "Zalgo z̷̢̛͔̗a̸̛̳l̵̡͇g̴̗͠o̸̞͝" * 20,
])
def test_any_title_renders(title):
    image = open_png(render_calibration_chart(MIXED, title))
    assert image.size == (WIDTH, HEIGHT)


def test_drawable_text_folds_to_the_font():
    assert drawable_text("José Ｍüller") == "Jose Muller"  # accents dropped, fullwidth folded
    assert drawable_text("日本") == "??"  # no glyph and nothing to fold to
    assert drawable_text("a\nb\tc\x00d") == "a b c d"  # one line
    assert drawable_text("\u202eab\u200dc") == "abc"  # bidi override and zero-width joiner gone
    assert drawable_text("x\ud800y") == "xy"
    assert drawable_text("it’s … 50%") == "it’s … 50%"  # what the font has is kept


def test_fit_text_truncates_with_an_ellipsis():
    font = chart_font(18)
    short = fit_text("Calibration of ada", font, 10_000)
    assert short == "Calibration of ada"
    cut = fit_text("Calibration of " + "W" * 300, font, 600)
    assert cut.startswith("Calibration of W") and cut.endswith("…")
    assert font.getlength(cut) <= 600 < font.getlength(cut[:-1] + "W…")
    assert fit_text("日本", font, 5) == "…"
