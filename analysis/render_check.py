# Check that a report's plot draws: python -m analysis check-render outputs/demo/<stamp>/report/report.html
"""Open ``report.html`` in headless Chromium and check that the Pareto plot was drawn.

A plotly figure is drawn by JavaScript: if the inlined plotly.js failed to load or threw, the
page would still open but the plot's div would stay empty. Two checks, both after the page's
scripts ran: the DOM of the Pareto div holds one SVG marker per trial, and a screenshot of the
page's top (hypervolume table and Pareto plot, not the per-level charts below) holds pixels
of the level colours the markers are drawn in.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from analysis.html_report import PARETO_DIV
from analysis.plots import LATENT_COLOR, LEVEL_COLORS
from training.common.errors import CotParetoError

# Without the networking switches Chromium tries to reach Google at start and stalls on a closed network.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise CotParetoError("chromium not found: `make test` installs Debian's chromium, or run "
                         "`apt-get install chromium`")


def _chromium(page: Path, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """Load ``page`` (a local file) headless; its scripts get 10 s of virtual time before ``args`` act."""
    with tempfile.TemporaryDirectory(prefix="cot-pareto-chromium-") as profile:
        cmd = [find_chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args,
               page.resolve().as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1000) -> Path:
    png.unlink(missing_ok=True)
    done = _chromium(page, f"--window-size={width},{height}", f"--screenshot={png.resolve()}")
    if not png.is_file():
        raise CotParetoError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    return png


def drawn_markers(page: Path, div_id: str = PARETO_DIV) -> int:
    """SVG markers plotly drew in the ``div_id`` figure, read from the DOM after the scripts ran."""
    done = _chromium(page, "--dump-dom")
    start = done.stdout.find(f'id="{div_id}"')
    if start < 0:
        raise CotParetoError(f"chromium could not load {page}, or it has no #{div_id} (exit {done.returncode}): "
                             f"{done.stderr.strip()[-400:]}")
    end = done.stdout.find("</table>", start)  # the front table follows the figure
    return done.stdout[start:end if end > 0 else None].count('class="point"')


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def color_pixels(png: Path, colors: Iterable[str], tolerance: int = 12) -> dict[str, int]:
    """How many pixels of each colour (each channel within ``tolerance``) the image holds."""
    image = Image.open(png).convert("RGB")
    targets = {color: _rgb(color) for color in colors}
    counts = dict.fromkeys(targets, 0)
    for count, pixel in image.getcolors(maxcolors=image.width * image.height):
        for color, rgb in targets.items():
            if all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb)):
                counts[color] += count
    return counts


def check_render(page: Path, png: Path | None = None, min_pixels: int = 40) -> dict[str, int]:
    """``markers`` drawn in the Pareto plot and pixels per level colour; raises when the plot is not drawn."""
    if not page.is_file():
        raise CotParetoError(f"{page} does not exist")
    png = png or page.with_name("report_screenshot.png")
    markers = drawn_markers(page)
    counts = color_pixels(screenshot(page, png), [*LEVEL_COLORS.values(), LATENT_COLOR])
    result = {"markers": markers, **{f"L{level}": counts[color] for level, color in LEVEL_COLORS.items()},
              "latent": counts[LATENT_COLOR]}
    if markers == 0 or max(counts.values()) < min_pixels:
        raise CotParetoError(f"the Pareto plot in {page} did not draw: {markers} SVG markers, and no level colour "
                             f"covers {min_pixels} pixels of the screenshot {png} ({result})")
    return result
