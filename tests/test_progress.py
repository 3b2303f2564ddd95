"""Progress bars redraw at most once a second (casn_lite/progress.py says why: nbval loses a
long cell's last message when a bar redraws ten times a second)."""

import io
from pathlib import Path

import casn_lite
from casn_lite.progress import REFRESH_SECONDS, progress_bar


def test_progress_bar_redraws_at_most_once_a_second():
    bar = progress_bar(total=10, file=io.StringIO())
    assert REFRESH_SECONDS >= 1.0
    assert bar.mininterval == REFRESH_SECONDS
    bar.close()


def test_every_bar_in_the_package_is_a_progress_bar():
    package = Path(casn_lite.__file__).parent
    direct = [str(path.relative_to(package)) for path in package.rglob("*.py")
              if path.name != "progress.py" and "tqdm" in path.read_text()]
    assert direct == [], f"these modules use tqdm directly, at its default ten redraws a second: {direct}"
