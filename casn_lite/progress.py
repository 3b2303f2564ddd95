"""Progress bars: tqdm.auto (a live widget in a notebook, a text bar in a terminal), redrawn
at most once a second.

Why not tqdm's default of ten redraws a second: in a notebook each redraw is a message from
the kernel, and nbval (`make test`) reads a cell's messages only once the cell has finished.
A kernel holds about 7,000 unread messages and then drops the newest, among them the "idle"
message nbval waits for, so a cell that trains for ten minutes at ten redraws a second
(about 12,000 messages) fails with "Timeout of 5 seconds exceeded waiting for output". At one
redraw a second the same cell sends about 1,200, provided nothing forces a redraw: pass
``refresh=False`` to ``set_postfix`` and ``set_description``, which redraw by default.
"""

from functools import partial

from tqdm.auto import tqdm

REFRESH_SECONDS = 1.0

progress_bar = partial(tqdm, mininterval=REFRESH_SECONDS)
