"""Command line: ``data synth``, ``data info``, ``reproduce``, ``budget``, ``train``, ``student`` and ``nbgrader`` (see ``python -m casn_lite -h``)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..data.datasets import DATASETS, DatasetLayoutError, ImageReadError, check_files, load_dataset
from ..data.synth import PRESETS, check_memory, generate
from .signals import exit_status, how_stopped, stop_on_signals


def _synth(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("train_ids", args.train_ids), ("test_ids", args.test_ids),
                                   ("cameras", args.cameras), ("images_per_camera", args.images_per_camera),
                                   ("height", args.height), ("width", args.width), ("seed", args.seed))
                 if v is not None}
    if args.control:
        overrides["control"] = True
    if args.tag_scale is not None:
        overrides["tag_scale"] = args.tag_scale
    if args.decoy:
        overrides["decoy"] = True
    if args.tag_moves:
        overrides["tag_moves"] = True
    try:
        config = dataclasses.replace(PRESETS[args.preset], **overrides)
        check_memory(config)
    except ValueError as err:
        raise ValueError(_as_flags(str(err))) from None
    start = time.perf_counter()
    meta = generate(args.out, config, progress=not args.quiet)
    seconds = time.perf_counter() - start
    total = sum(meta["counts"].values())
    kind = "".join((", positive control" if config.control else "", ", decoy" if config.decoy else ""))
    print(f"SynthPeople ({args.preset}{kind}, seed {config.seed}): {total} images in {seconds:.1f} s "
          f"({total / seconds:.0f} images/s) written to {args.out}")
    print(load_dataset("synthpeople", args.out).summary())
    return 0


def _as_flags(message: str) -> str:
    """A SynthConfig message in the words of the command line: ``train_ids`` -> ``--train-ids``."""
    for name in ("train_ids", "test_ids", "images_per_camera", "cameras", "height", "width", "seed", "tag_scale",
                 "tag_moves"):
        message = re.sub(rf"\b{name}\b", "--" + name.replace("_", "-"), message)
    return message.replace("set control too", "set --control too")


def _info(args: argparse.Namespace) -> int:
    data = load_dataset(args.dataset, args.root)
    print(data.summary())
    problems = check_files(data, decode=args.check)
    total = len(data.train) + len(data.query) + len(data.gallery)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ImageReadError(f"{len(problems)} of {total} images cannot be used: {shown}; remove or replace them")
    print(f"  all {total} images {'and their masks decode' if args.check else 'have readable headers'}"
          + ("" if args.check else " (--check decodes every image and mask)"))
    return 0


def _notebook_numbers(only: str | None) -> list[str] | None:
    """``--only 00,01`` as ["00", "01"]; None when not given; an empty entry is refused."""
    if only is None:
        return None
    numbers = [n.strip() for n in only.split(",")]
    if not all(numbers):
        raise ValueError(f"--only {only!r} has an empty entry; give notebook numbers, e.g. --only 00,01")
    return numbers


@contextmanager
def _notebook_extras(command: str) -> Iterator[None]:
    """Within the block, a library of the notebook extras that is missing (papermill,
    jupytext, ...) is one line naming what to install."""
    try:
        yield
    except ImportError as err:
        raise ValueError(f"{command} needs the notebook extras ({err.name or err} is missing): "
                         "pip install -e '.[notebooks]'") from None


def _reproduce(args: argparse.Namespace) -> int:
    only = _notebook_numbers(args.only)
    with _notebook_extras("reproduce"):
        from .runner import run  # papermill is imported only when needed
    results = run(args.profile, only, args.data_root, args.out, kernel=args.kernel, restart=args.restart,
                  arch=args.arch, jobs=args.jobs, smoke=args.smoke)
    return 0 if all(r["status"] == "ok" for r in results) else 1


def _budget(args: argparse.Namespace) -> int:
    with _notebook_extras("budget"):
        from .budget import budget_table, gpu_run_budget
    print(budget_table(gpu_run_budget(args.profile), f"benchmarks/gpu_run.sh with profile {args.profile!r}, "
                                                     "on one GPU:"))
    return 0


def _student(args: argparse.Namespace) -> int:
    with _notebook_extras("student"):
        from .handouts import student_copies
    for path in student_copies(args.out, _notebook_numbers(args.only), force=args.force,
                               keep_outputs=args.keep_outputs):
        print(f"wrote {path}")
    print(f"wrote {Path(args.out) / 'README.md'} (set-up, order, time per notebook)")
    return 0


def _nbgrader(args: argparse.Namespace) -> int:
    with _notebook_extras("nbgrader"):
        from .grader import grader_sources
    for path in grader_sources(args.out, _notebook_numbers(args.only), force=args.force):
        print(f"wrote {path}")
    print("next, in the course folder: nbgrader generate_assignment ASSIGNMENT, then, once the students "
          "have submitted, nbgrader autograde ASSIGNMENT")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train_command import train

    train(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ..models import ARCHS  # as train_command, below, does: no more start-up time

    parser = argparse.ArgumentParser(prog="python -m casn_lite", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate or inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="generate SynthPeople in Market-1501 layout")
    synth.add_argument("--out", required=True, help="folder to write (created if missing)")
    synth.add_argument("--preset", choices=sorted(PRESETS), default="small",
                       help="small: a few thousand images (default); market: Market-1501 scale")
    for flag, help_text in (("--train-ids", "training identities"), ("--test-ids", "test identities"),
                            ("--cameras", "cameras (2-9)"),
                            ("--images-per-camera", "images of an identity in each camera it visits"),
                            ("--height", "image height in pixels"), ("--width", "image width in pixels"),
                            ("--seed", "random seed (same seed, same files)")):
        synth.add_argument(flag, type=int, help=f"{help_text} (default: from the preset)")
    synth.add_argument("--control", action="store_true",
                       help="the positive control: a name tag per identity (on every training image, a "
                            "quarter of the test images) and per camera a vertical shift and scale and a "
                            "coloured sign (docs/positive_control.md)")
    synth.add_argument("--tag-scale", type=float,
                       help="with --control: the name tag's height and width times this, 0.5-4 (default 1)")
    synth.add_argument("--tag-moves", action="store_true",
                       help="with --control (version 4): the name tag at a random height on the body, chest to "
                            "thighs, in each image (docs/positive_control.md)")
    synth.add_argument("--decoy", action="store_true",
                       help="version 3 of the positive control: a badge with the person's code on the background "
                            "at a random height in half of the images (another test person's at test; "
                            "docs/positive_control.md)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(run=_synth)

    info = data_commands.add_parser("info", help="count images, identities and cameras of a dataset folder")
    info.add_argument("root", help="dataset folder")
    info.add_argument("--dataset", default="auto", choices=["auto", *DATASETS], help="layout (default: detect)")
    info.add_argument("--check", action="store_true",
                      help="decode every image and SynthPeople mask (default: check each file's header only)")
    info.set_defaults(run=_info)

    rep = commands.add_parser("reproduce", help="run the notebooks with papermill under a profile")
    rep.add_argument("--profile", default="ci", help="profiles/<name>.yaml: ci, cpu, gpu (default: ci)")
    rep.add_argument("--only", help="comma-separated notebook numbers, e.g. 00,01 (default: all)")
    rep.add_argument("--data-root", help="a real dataset folder instead of SynthPeople")
    rep.add_argument("--out", help="where executed notebooks and metrics go "
                                   "(default: runs/<profile>[-<arch>][-<dataset folder>])")
    rep.add_argument("--arch", choices=sorted(ARCHS),
                     help="run the notebooks that have an arch parameter with this model "
                          "(and the profile's arch settings, e.g. PCB's taller input)")
    rep.add_argument("--jobs", type=int, default=1,
                     help="notebooks to run at once: one per visible GPU, or sharing the CPU cores (default 1)")
    rep.add_argument("--restart", action="store_true",
                     help="run every notebook again, training from scratch: its checkpoints are removed "
                          "(default: skip those that finished, resume the rest)")
    rep.add_argument("--kernel", help="Jupyter kernel to run them in (default: casn-lite, which `make install` "
                                      "registers, else python3)")
    rep.add_argument("--smoke", action="store_true",
                     help="the profile's code path (GPU branches included) on tiny data and one epoch per "
                          "training, on any machine, into <out>-smoke; prints the profile's GPU budget")
    rep.set_defaults(run=_reproduce)

    bud = commands.add_parser("budget", help="the seconds benchmarks/gpu_run.sh should take with a profile, "
                                             "per notebook, from measured GPU speeds (no training)")
    bud.add_argument("--profile", default="gpu", help="profiles/<name>.yaml (default: gpu)")
    bud.set_defaults(run=_budget)

    from .train_command import add_arguments

    trainer = commands.add_parser("train", help="train one variant (also under torchrun, on several GPUs)")
    add_arguments(trainer)
    trainer.set_defaults(run=_train)

    student = commands.add_parser("student", help="write student copies of the notebooks (no answers, "
                                                  "exercise stubs, a README) for a course hand-out")
    student.add_argument("--out", required=True, help="folder for the .ipynb copies (created if missing)")
    student.add_argument("--only", help="comma-separated notebook numbers, e.g. 02,03 (default: all)")
    student.add_argument("--force", action="store_true", help="overwrite copies already in --out")
    student.add_argument("--keep-outputs", action="store_true",
                         help="keep the outputs of the cells before the exercises (from the executed notebooks), "
                              "for classes that read before they run")
    student.set_defaults(run=_student)

    grader = commands.add_parser("nbgrader", help="write the notebooks as nbgrader source notebooks (exercises as "
                                                  "autograded answers, their checks as tests with points)")
    grader.add_argument("--out", required=True, help="the assignment's folder in an nbgrader course, "
                                                     "COURSE/source/ASSIGNMENT (created if missing)")
    grader.add_argument("--only", help="comma-separated notebook numbers, e.g. 00 (default: all)")
    grader.add_argument("--force", action="store_true", help="overwrite notebooks already in --out")
    grader.set_defaults(run=_nbgrader)
    return parser


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the command line shows it: ``warning: <message>``, no source line."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(), stop_on_signals():  # SIGTERM stops as Ctrl-C does
            warnings.showwarning = _one_line
            return args.run(args)
    except (DatasetLayoutError, ImageReadError, ValueError) as err:  # ReproduceError and HandoutError are ValueErrors
        print(f"error: {_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"interrupted: {INTERRUPTED.get(args.command, 'stopped')} ({how_stopped(err)})", file=sys.stderr)
        return exit_status(err)


def _message(err: BaseException) -> str:
    """An error's message on one line. An error raised in a DataLoader worker arrives with the
    worker's whole traceback in its message; its last line is the error itself."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = re.sub(r"^[\w.]+: ", "", last)  # "casn_lite.data.datasets.ImageReadError: ..."
    return text


INTERRUPTED = {  # what Ctrl-C leaves behind, per command
    "data": "nothing was changed in --out (a new set is moved into place only when complete)",
    "reproduce": "the running notebook is marked interrupted; run the same command again to resume",
    "budget": "nothing was written",
    "train": "the last finished epoch is saved; run the same command again to resume",
    "student": "files already written are complete; the others were not written",
    "nbgrader": "files already written are complete; the others were not written",
}


if __name__ == "__main__":
    sys.exit(main())
