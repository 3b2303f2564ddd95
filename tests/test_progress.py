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


def test_training_redraws_the_bar_only_when_its_interval_has_passed():
    """A forced redraw per step (tqdm's set_postfix refreshes by default) bypasses the
    interval: notebook 05's cell then sent thousands of messages and CI failed again."""
    import torch

    from casn_lite.engine import train_one_epoch

    weight = torch.nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = [{"image": torch.zeros(2, 3, 4, 2)}] * 50
    out = io.StringIO()
    bar = progress_bar(total=len(loader), file=out, mininterval=3600)  # no timed redraw in this test
    train_one_epoch(lambda batch, progress: (weight * 1.0, {}), loader, optimizer, scheduler, epoch=0, bar=bar)
    assert out.getvalue().count("\r") <= 2, "drawn when created, not once per step"
    bar.close()
