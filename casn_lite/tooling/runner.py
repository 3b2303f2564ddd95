"""Batch reproduction: run the notebooks with papermill under a named profile.

    python -m casn_lite reproduce --profile {ci,cpu,gpu} [--only 00,01] [--data-root DIR] [--out DIR]

Each notebook's source of truth (``notebooks/NN_name.py``) is converted by jupytext,
executed by papermill with the profile's parameters, and saved with its outputs in
``runs/<profile>/NN_name.ipynb``, beside ``NN_name.metrics.json``: the JSON shown by
the notebook's last cell (tagged ``metrics``), read back from the executed notebook.
Profile, notebook and parameter names are checked before anything runs: papermill
would inject a misspelt parameter without a word.

A run locks its output folder (a second run into it is refused), records a notebook whose
kernel dies as failed and goes on, and marks a notebook stopped by Ctrl-C or SIGTERM as
interrupted. Each notebook runs into a temporary file, moved into place with its record,
which holds the notebook's SHA-256: a notebook is skipped as finished only when it is the
one its record describes. Before anything runs, the runner checks each notebook's ``.py``
against its ``.ipynb`` (``casn_lite.pairs``), each profile value against the type and range
of the notebook's parameter, ``--data-root`` and ``--kernel``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import papermill
import yaml
from jupyter_client.manager import AsyncKernelManager
from traitlets import CaselessStrEnum, default

from . import files, saving, signals
from .pairs import check_pair

__all__ = ["NOTEBOOK_DIR", "PROFILE_DIR", "KERNEL", "notebooks", "profiles", "plan", "run", "ReproduceError",
           "check_sections", "lock_folder", "default_kernel", "parameter_defaults"]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
PROFILE_DIR = ROOT / "profiles"


# The Jupyter kernel every notebook names in its metadata; `make install` registers it for the
# project's .venv, so papermill or `jupyter nbconvert --execute` started from any Jupyter
# runs the notebooks where casn_lite is installed.
KERNEL = "casn-lite"


def default_kernel() -> str:
    """The project's kernel when it is registered for the environment this runs in, else
    ``python3``, this interpreter's own (a machine set up without `make install`, such as a
    lent GPU, or a kernel registered by another clone)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL).argv
    except NoSuchKernel:
        print(f"note: no Jupyter kernel named {KERNEL!r} (`make install` registers it); using python3")
        return "python3"
    if Path(argv[0]).absolute().parent != Path(sys.executable).absolute().parent:
        print(f"note: the {KERNEL!r} kernel runs {argv[0]}, not this environment; using python3 "
              "(`make kernel` points it here)")
        return "python3"
    return KERNEL


class ReproduceError(ValueError):
    """A profile, notebook, parameter or option that cannot be used, or a busy output folder."""


SECTIONS = {"description", "defaults", "notebooks", "arch", "real_data"}  # a profile's top level
LAYER_SECTIONS = {"defaults", "notebooks"}  # inside real_data and arch.<name>
ARCHS = {"ide", "pcb"}


def notebooks() -> dict[str, Path]:
    """Notebook number ("00") -> its .py source of truth."""
    return {p.name[:2]: p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))}


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _parameters(source: Path) -> set[str]:
    """Names in the notebook's cell tagged 'parameters', as papermill reads them (read again
    whenever the file changes)."""
    return set(_declared(source))


def parameter_defaults(source: Path) -> dict:
    """The notebook's parameters and their default values (None where a default is not a
    literal)."""
    return {name: default for name, (default, _) in _declared(source).items()}


def _declared(source: Path) -> dict[str, tuple[object, str]]:
    """Each parameter's default value (None where it is not a literal) and its comment."""
    stat = Path(source).stat()
    return {name: (_literal(default), comment)
            for name, default, comment in _inspect_parameters(str(source), stat.st_mtime_ns, stat.st_size)}


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


@functools.lru_cache(maxsize=64)
def _inspect_parameters(source: str, mtime_ns: int, size: int) -> tuple[tuple[str, str, str], ...]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(source).stem + ".ipynb")
        nbformat.write(jupytext.read(source), path)
        found = papermill.inspect_notebook(str(path))
        return tuple((name, p["default"], p["help"]) for name, p in found.items())


# at least 1: a count of epochs, images, identities or pixels (other numbers: at least 0
# when the notebook's default is)
POSITIVE = {"epochs", "ide_epochs", "batch_size", "num_instances", "height", "width", "train_ids", "test_ids",
            "cameras", "images_per_camera", "pairs_per_batch", "embed_dim", "attention_pairs",
            "profile_length"}


def _value_problem(name: str, value, default, comments: str) -> str | None:
    """Why ``value`` cannot stand for a parameter whose default is ``default`` (None when it
    can): the default's type (an int for an int, a number for a float, a string for a string,
    True or False for a flag, a list for a list) or a value its comment names (``auto``,
    ``None``), and at least 0 (1 for counts) when the default is a number that is."""
    named = {w.strip("'\"") for w in re.findall(r"[\w'\"]+", comments)}
    if default is None or value is None and "None" in named:
        return None
    if isinstance(value, str) and value in named:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{value!r} is not True or False"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not a whole number"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{value!r} is not a number"
    elif isinstance(default, str):
        return None if isinstance(value, str) else f"{value!r} is not a string"
    elif isinstance(default, list):
        if not isinstance(value, list):
            return f"{value!r} is not a list"
        element = default[0] if default else None
        problems = [_value_problem(name, v, element, comments) for v in value]
        return next((f"{value!r}: {p}" for p in problems if p), None)
    else:
        return None
    least = 1 if name in POSITIVE else 0 if default >= 0 else None
    if least is not None and value < least:
        return f"{value!r} is below {least}"
    return None


def _check_values(profile: str, jobs: list[Job]) -> None:
    """Refuse a profile value of the wrong type or range for its notebook's parameter (``epochs:
    "3"``, ``2.5``, ``-2``) before any kernel starts: in the notebook it would fail late."""
    declared = {job.number: _declared(job.source) for job in jobs}
    comments: dict[str, str] = {}
    for params in declared.values():
        for name, (_, comment) in params.items():
            comments[name] = comments.get(name, "") + " " + comment
    for job in jobs:
        for name, value in job.parameters.items():
            if name not in declared[job.number]:
                continue
            problem = _value_problem(name, value, declared[job.number][name][0], comments.get(name, ""))
            if problem:
                default = declared[job.number][name][0]
                raise ReproduceError(f"profile {profile!r}: {name} for notebook {job.number} ({job.source.name}): "
                                     f"{problem}; its default is {default!r}")


@dataclass
class Job:
    number: str
    source: Path
    parameters: dict = field(default_factory=dict)
    kernel_arguments: list[str] = field(default_factory=list)  # smoke runs: the GPU-path emulation


def _layer(profile: str, where: str, section: dict, names: dict[str, set[str]]) -> dict[str, dict]:
    """One layer of a profile ({defaults: {...}, notebooks: {"01": {...}}}) as parameters per
    notebook; names no notebook has are refused with the ones it could mean."""
    defaults = dict(section.get("defaults") or {})
    per_notebook = section.get("notebooks") or {}
    every_name = set().union(*names.values())
    for key in defaults:
        if key not in every_name:
            raise ReproduceError(f"profile {profile!r}{where}: no notebook has a parameter {key!r}; "
                                 f"known: {', '.join(sorted(every_name))}")
    for number, own in per_notebook.items():
        if number not in names:
            raise ReproduceError(f"unknown notebook {number!r}; choose from: {', '.join(names)}")
        unknown = set(own or {}) - names[number]
        if unknown:
            raise ReproduceError(f"profile {profile!r}{where}: notebook {number} has no parameter "
                                 f"{', '.join(sorted(unknown))}; it has: {', '.join(sorted(names[number]))}")
    return {n: {**{k: v for k, v in defaults.items() if k in names[n]}, **(per_notebook.get(n) or {})}
            for n in names}


def _read_profile(profile: str) -> dict:
    """A profile's YAML as a mapping; malformed text is refused with where it breaks."""
    path = PROFILE_DIR / f"{profile}.yaml"
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ReproduceError(f"profile {path} is not valid YAML{at}: "
                             f"{getattr(err, 'problem', None) or err}") from None
    spec = spec if spec is not None else {}
    check_sections(profile, spec)
    return spec


def check_sections(profile: str, spec) -> None:
    """Refuse a profile with a section the runner does not read (a misspelt ``defualts:``
    would otherwise be ignored without a word)."""
    def refuse_unknown(mapping, known: set[str], where: str) -> None:
        if not isinstance(mapping, dict):
            raise ReproduceError(f"profile {profile!r}: {where or 'the file'} must be a mapping of sections")
        for key in mapping:
            if key not in known:
                raise ReproduceError(f"profile {profile!r}: unknown section {where + str(key)!r}; "
                                     f"known: {', '.join(sorted(known))}")

    refuse_unknown(spec, SECTIONS, "")
    refuse_unknown(spec.get("real_data") or {}, LAYER_SECTIONS, "real_data.")
    refuse_unknown(spec.get("arch") or {}, ARCHS, "arch.")
    for arch, section in (spec.get("arch") or {}).items():
        refuse_unknown(section or {}, LAYER_SECTIONS, f"arch.{arch}.")


def plan(profile: str, only: list[str] | None = None, data_root: str | None = None,
         arch: str | None = None) -> list[Job]:
    """The notebooks to run and their parameters; refuses unknown names with the valid ones.

    A profile's parameters come in layers, later ones winning: its ``defaults`` and
    ``notebooks``; with ``data_root``, its ``real_data`` section (paper-like settings for a
    real dataset); with ``arch``, its ``arch: {pcb: ...}`` section. With ``arch``, only the
    notebooks that have an ``arch`` parameter run."""
    if profile not in profiles():
        raise ReproduceError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles())}")
    if arch is not None and arch not in ARCHS:
        raise ReproduceError(f"unknown arch {arch!r}; choose one of: {', '.join(sorted(ARCHS))}")
    spec = _read_profile(profile)
    available = notebooks()
    if only is not None and not only:
        raise ReproduceError(f"no notebook chosen; choose from: {', '.join(available)}")
    chosen = only or list(available)
    for number in chosen:
        if number not in available:
            raise ReproduceError(f"unknown notebook {number!r}; choose from: {', '.join(available)}")
    names = {n: _parameters(available[n]) for n in available}
    layers = [_layer(profile, "", spec, names)]
    if data_root is not None:
        layers.append(_layer(profile, " real_data", spec.get("real_data") or {}, names))
        layers.append({n: {"data_root": str(Path(data_root).expanduser().resolve())} for n in names
                       if "data_root" in names[n]})
    if arch is not None:
        arch_sections = spec.get("arch") or {}
        layers.append(_layer(profile, f" arch {arch}", arch_sections.get(arch) or {}, names))
        layers.append({n: {"arch": arch} for n in names if "arch" in names[n]})
        if only is None:
            chosen = [n for n in chosen if "arch" in names[n]]
    jobs = []
    for number in chosen:
        params: dict = {}
        for layer in layers:
            params.update(layer.get(number, {}))
        jobs.append(Job(number, available[number], params))
    _check_values(profile, jobs)
    for job in jobs:
        check_pair(job.source)
    return jobs


def check_data_root(data_root: str) -> None:
    """Refuse, before any notebook starts, a ``--data-root`` that is not a dataset folder whose
    test split can be scored (once, rather than once per notebook)."""
    from .data.datasets import DatasetLayoutError, check_evaluable, load_dataset

    try:
        check_evaluable(load_dataset("auto", data_root))
    except DatasetLayoutError as err:
        raise ReproduceError(f"--data-root: {err}") from None


def check_kernel(kernel: str) -> None:
    """Refuse an unknown ``--kernel`` before any notebook starts, naming the installed ones."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(kernel)
    except NoSuchKernel:
        raise ReproduceError(f"--kernel: no Jupyter kernel named {kernel!r}; installed: "
                             f"{', '.join(sorted(manager.find_kernel_specs()))}") from None


def _metrics(executed: Path) -> dict:
    """The metrics of an executed notebook: the JSON its cell tagged 'metrics' prints (as
    the notebooks do: ``print(json.dumps(metrics))``) or displays (``display(JSON(...))``)."""
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if "metrics" not in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if "application/json" in output.get("data", {}):
                return dict(output["data"]["application/json"])
        printed = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        try:
            value = json.loads(printed)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def _runner_parameters(job: Job, names: set[str], profile: str, out: Path) -> dict:
    """What the runner adds on its own: where a notebook keeps checkpoints (so an interrupted
    run resumes), and the profile's name (recorded with results)."""
    extra = {}
    if "checkpoint_dir" in names and "checkpoint_dir" not in job.parameters:
        extra["checkpoint_dir"] = str((out / "checkpoints" / job.source.stem).resolve())
    if "profile" in names and "profile" not in job.parameters:
        extra["profile"] = profile
    return extra


def _finished(record: Path, parameters: dict) -> dict | None:
    """The earlier result of this notebook, if it ran to the end with the same parameters and
    its executed notebook is the one the record describes (a notebook replaced since, or left
    half-run by a killed run, is not)."""
    try:
        earlier = json.loads(record.read_text())
    except (OSError, ValueError):  # none yet, or left damaged by an older version: run it again
        return None
    same = json.dumps(earlier.get("parameters"), sort_keys=True) == json.dumps(parameters, sort_keys=True, default=str)
    executed = record.with_name(record.name.replace(".metrics.json", ".ipynb"))
    return earlier if earlier.get("status") == "ok" and same and _matches(executed, earlier) else None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _matches(executed: Path, record: dict) -> bool:
    """Whether ``executed`` is the notebook ``record`` describes: its SHA-256 (records written
    before they held one: every code cell of it completed)."""
    if not executed.is_file():
        return False
    if "sha256" in record:
        return _digest(executed) == record["sha256"]
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return False
    return all(c.metadata.get("papermill", {}).get("status") == "completed" for c in nb.cells if c.cell_type == "code")


def default_out(profile: str, data_root: str | None = None, arch: str | None = None,
                smoke: bool = False) -> Path:
    """runs/<profile>[-<arch>][-<dataset folder>][-smoke]: runs with different settings never mix."""
    name = profile + (f"-{arch}" if arch and arch != "ide" else "")
    name += f"-{Path(data_root).expanduser().resolve().name}" if data_root else ""
    return ROOT / "runs" / (name + ("-smoke" if smoke else ""))


def _execute(job: Job, out: Path, kernel: str, cwd: str) -> dict:
    """Run one notebook with papermill into a temporary file; then move it into place with its
    record (metrics read back, and the notebook's SHA-256). Any error, a dead kernel included,
    makes it failed; Ctrl-C or SIGTERM marks it interrupted. A run that does not finish leaves
    an earlier complete one in place and is saved beside it (``NN.interrupted.ipynb``)."""
    _idle.clear()  # from here a signal interrupts this notebook
    try:
        if signals.stop_requested():  # a parallel worker told to stop starts nothing new
            raise signals.stop_exception()
        return _execute_now(job, out, kernel, cwd)
    finally:
        _idle.set()


def _execute_now(job: Job, out: Path, kernel: str, cwd: str) -> dict:
    print(f"[{job.number}] {job.source.stem} {job.parameters or '(defaults)'}", flush=True)
    start = time.perf_counter()
    result = {"notebook": job.source.stem, "parameters": job.parameters, "status": "ok"}
    stop: KeyboardInterrupt | None = None
    executed = out / f"{job.source.stem}.ipynb"
    with saving.temporary(out / f"{job.source.stem}.source.ipynb", ".ipynb") as source_nb, \
            saving.temporary(executed, ".ipynb") as partial:
        nbformat.write(jupytext.read(job.source), source_nb)
        try:
            papermill.execute_notebook(source_nb, partial, parameters=job.parameters, kernel_name=kernel, cwd=cwd,
                                       progress_bar=False, extra_arguments=QUIET_KERNEL + job.kernel_arguments,
                                       **KERNEL_MANAGER)
        except papermill.PapermillExecutionError as err:
            result.update(status="failed", cell=err.exec_count, error=f"{err.ename}: {err.evalue}")
        except KeyboardInterrupt as err:
            stop = err
        except Exception as err:  # noqa: BLE001  a dead kernel, a timeout: this notebook failed, the rest run
            result.update(status="failed", error=f"{type(err).__name__}: {_first_line(err)}")
        if stop is None and signals.stop_requested():  # a library's cleanup swallowed the exception
            stop = signals.stop_exception()
        if stop is not None:
            result.update(status="interrupted", error=signals.how_stopped(stop))
            result.pop("cell", None)
            _mark_interrupted(partial)
        result["seconds"] = round(time.perf_counter() - start, 1)
        result["metrics"] = _metrics(partial) if partial.is_file() and result["status"] == "ok" else {}
        _place(partial, out, job, result)
    if stop is not None:
        raise stop
    return result


def _place(partial: Path, out: Path, job: Job, result: dict) -> None:
    """Move an executed notebook and its record into place. A notebook that did not finish
    does not replace an earlier complete run: it goes beside it, ``NN.<status>.ipynb``."""
    stem = job.source.stem
    executed, record = out / f"{stem}.ipynb", out / f"{stem}.metrics.json"
    if result["status"] != "ok" and _complete(record):
        if partial.is_file():
            aside = out / f"{stem}.{result['status']}.ipynb"
            os.replace(partial, aside)
            result["saved_as"] = aside.name
        result["kept"] = f"{executed.name} still holds the earlier complete run"
        return
    if partial.is_file():
        result["sha256"] = _digest(partial)
        os.replace(partial, executed)  # (a run stopped before papermill wrote anything has no notebook)
    _write_text(record, json.dumps(result, indent=1, default=str))


def _complete(record: Path) -> bool:
    """Whether ``record`` describes a complete run whose notebook is still in place."""
    try:
        earlier = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    executed = record.with_name(record.name.replace(".metrics.json", ".ipynb"))
    return earlier.get("status") == "ok" and _matches(executed, earlier)


class _QuietOnceStopped(logging.Filter):
    """Once the run is stopped, what papermill and asyncio log while the kernel is shut down
    ("Kernel died while waiting for execute reply", "Task exception was never retrieved")
    says nothing the one-line report does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not signals.stop_requested()


def _quiet_once_stopped() -> None:
    for name in ("papermill", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietOnceStopped) for f in logger.filters):
            logger.addFilter(_QuietOnceStopped())


def _first_line(err: BaseException) -> str:
    """The first line of an error's message, for the one-line summary."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


class _LocalKernelManager(AsyncKernelManager):
    """A kernel reached through Unix sockets (files in Jupyter's runtime folder) rather than
    TCP ports: choosing a free port and the kernel binding it are two steps, and under load
    another process (another notebook's kernel) can take the port in between ("Address already
    in use"; the kernel dies before it starts)."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    @default("ip")
    def _ip_default(self) -> str:
        # the sockets' path, absolute and this kernel's own (the client and the kernel run in
        # different folders; jupyter_client's default, "kernel-ipc", is relative and shared)
        return os.path.join(tempfile.gettempdir(), f"casn-lite-kernel-{secrets.token_hex(8)}")


KERNEL_MANAGER = {"kernel_manager_class": _LocalKernelManager} if os.name == "posix" else {}

QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]  # no TCP warning per notebook, no ZMQError as a stopped one ends


def _mark_interrupted(executed: Path) -> None:
    """Say in an executed notebook that it was stopped: papermill's metadata would claim that
    every cell it never ran completed."""
    if not executed.is_file():
        return
    nb = nbformat.read(executed, as_version=4)
    nb.metadata.setdefault("papermill", {})["status"] = "interrupted"
    cells = [c.metadata.papermill for c in nb.cells if "papermill" in c.metadata]
    started = [meta for meta in cells if meta.get("start_time")]
    for meta in cells:
        if not meta.get("start_time"):
            meta["status"] = "pending"
    if started:  # the run stopped in (or right after) the last cell it started
        started[-1]["status"] = "interrupted"
    _write_notebook(executed, nb)


def _write_text(path: Path, text: str) -> None:
    """Write a file under a temporary name, then move it into place (``saving.write_text``)."""
    saving.write_text(path, text)


def _write_notebook(path: Path, nb: nbformat.NotebookNode) -> None:
    """``_write_text`` for a notebook, ending the file with a newline as ``nbformat.write`` does."""
    _write_text(path, nbformat.writes(nb) + "\n")


def _worker_setup(slots, parent: int) -> None:
    """A parallel worker takes one slot: a GPU it alone sees, or its share of the CPU cores.
    The notebook kernels it starts inherit this environment. It stops as the runner does:
    SIGINT and SIGTERM mark its notebook interrupted; and it ends when the runner has gone,
    even killed by SIGKILL (``_watch_parent``; its kernels follow it: ipykernel watches its
    parent)."""
    signals.install(busy=lambda: not _idle.is_set())
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-runner").start()
    _quiet_once_stopped()
    kind, value = slots.get()
    if kind == "gpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = value
    else:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = value


_idle = threading.Event()  # a worker runs no notebook now
_idle.set()


def _watch_parent(parent: int, every: float = 1.0, grace: float = 120.0) -> None:
    """In a worker: once the runner ``parent`` has gone, stop the running notebook as SIGTERM
    does (marked interrupted, kernel shut down), then end this process, which would otherwise
    wait for work for good."""
    while os.getppid() == parent:
        time.sleep(every)
    if not _idle.is_set():
        os.kill(os.getpid(), signal.SIGTERM)
        _idle.wait(grace)
    os._exit(128 + signal.SIGTERM)


def _slots(jobs: int):
    """One slot per parallel worker: visible GPUs in turn, or on CPU an equal share of cores."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
        return [("gpu", ids[k % len(ids)]) for k in range(jobs)]
    return [("cpu", str(max(1, (os.cpu_count() or 1) // jobs)))] * jobs


def run(profile: str, only: list[str] | None = None, data_root: str | None = None,
        out: str | Path | None = None, kernel: str | None = None, restart: bool = False,
        arch: str | None = None, jobs: int = 1, smoke: bool = False) -> list[dict]:
    """Run the planned notebooks; a failure is recorded and the rest still run.

    Run again after an interruption, it skips the notebooks that already finished with the
    same parameters, and a notebook with a ``checkpoint_dir`` parameter resumes its training
    from the last checkpoint under ``out/checkpoints/``. ``restart`` runs every notebook again
    and removes those checkpoints first, so that they train from scratch. With ``jobs``
    > 1, that many notebooks run at once, each on its own GPU (or its share of the cores).
    With ``smoke``, the profile's code path runs on tiny data (``casn_lite.smoke``) into
    ``<out>-smoke``, from scratch, and the profile's GPU time is printed (``casn_lite.budget``),
    checked against what the smoke run trained."""
    if jobs < 1:
        raise ReproduceError(f"--jobs must be at least 1, got {jobs}")
    planned = plan(profile, only, data_root, arch)
    if data_root is not None:
        check_data_root(data_root)
    if kernel is not None:
        check_kernel(kernel)
    kernel = kernel or default_kernel()
    out = Path(out) if out else default_out(profile, data_root, arch, smoke)
    _quiet_once_stopped()
    with signals.stop_on_signals(), lock_folder(out):
        saving.sweep_stale(out)  # what a killed run left
        if smoke:
            _prepare_smoke(planned, out)
        results = _run_planned(planned, profile, out, kernel, restart or smoke, jobs)
    ordered = [results[job.number] for job in planned]
    print(summary_table(ordered, out))
    if smoke:
        _report_estimate(planned, profile, arch, only, data_root, out, jobs)
    return ordered


def _prepare_smoke(planned: list[Job], out: Path) -> None:
    """Shrink each job to a smoke run and have its kernel emulate the GPU path, with an
    empty log and an empty cache of IDE starts."""
    from .smoke import kernel_arguments, smoke_parameters

    log, cache = out / "smoke-steps.jsonl", out / "start-cache"
    log.unlink(missing_ok=True)
    shutil.rmtree(cache, ignore_errors=True)
    for job in planned:
        job.parameters = smoke_parameters(job.parameters, _parameters(job.source))
        job.kernel_arguments = kernel_arguments(log.resolve(), job.number, cache.resolve())


def _report_estimate(planned: list[Job], profile: str, arch: str | None, only: list[str] | None,
                     data_root: str | None, out: Path, jobs: int) -> None:
    """Print (and save as gpu-estimate.json) the GPU budget of the run the smoke run stood for
    (``casn_lite.budget``), and check the trainings the smoke run logged against the budget's
    plan of its own, smaller run (two seeds at most)."""
    from .budget import budget_table, gpu_run_budget, notebooks_budget, profile_budget
    from .smoke import plan_mismatches

    if data_root is not None:
        print("\nGPU budget: worked out for SynthPeople only, not for a real dataset (--data-root)")
        return
    log = out / "smoke-steps.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    try:
        budget, whole = profile_budget(profile, arch, only=only), gpu_run_budget(profile)
        ran = notebooks_budget([(job.number, job.source.stem, {**parameter_defaults(job.source), **job.parameters})
                                for job in planned])
    except ValueError as err:
        print(f"\nGPU budget: {err}")
        return
    mismatches = plan_mismatches(ran, records)
    command = f"reproduce --profile {profile}" + (f" --arch {arch}" if arch else "")
    result = {"command": command, "seconds": budget.seconds, "gpu_run_seconds": whole.seconds,
              "parts": [{"label": p.label, "training": p.training, "evaluation": p.evaluation, "other": p.other,
                         "seconds": p.seconds} for p in budget.parts], "plan_mismatches": mismatches}
    _write_text(out / "gpu-estimate.json", json.dumps(result, indent=1))
    print(budget_table(budget, f"GPU budget of `{command}` on one GPU:"))
    print(f"  the whole benchmarks/gpu_run.sh (set-up, benchmarks, every half of profile {profile!r}): "
          f"{whole.seconds / 60:.1f} min (`python -m casn_lite budget --profile {profile}`)")
    for line in mismatches or ["the smoke run trained what the budget counts"]:
        print(f"  {line}")
    if mismatches and jobs > 1:
        print("  (with --jobs > 1, notebooks that run at once may each train the start they share)")


def _run_planned(planned: list[Job], profile: str, out: Path, kernel: str, restart: bool,
                 jobs: int) -> dict[str, dict]:
    """Skip what finished, run the rest (one at a time or ``jobs`` at once); results by number."""
    results: dict[str, dict] = {}
    todo = []
    for job in planned:
        job.parameters.update(_runner_parameters(job, _parameters(job.source), profile, out))
        record = out / f"{job.source.stem}.metrics.json"
        if not restart and (earlier := _finished(record, job.parameters)) is not None:
            print(f"[{job.number}] {job.source.stem}: finished earlier, skipped (--restart runs it again)", flush=True)
            results[job.number] = earlier
        else:
            if restart:
                _forget_checkpoints(job, out)
            todo.append(job)
    if jobs <= 1:
        for job in todo:
            results[job.number] = _execute(job, out, kernel, str(NOTEBOOK_DIR))
    elif todo:
        results.update(_run_parallel(todo, out, kernel, jobs))
    return results


def _run_parallel(todo: list[Job], out: Path, kernel: str, jobs: int) -> dict[str, dict]:
    """``jobs`` notebooks at once, each in a worker process. Stopped (Ctrl-C, SIGTERM), the
    workers are told to stop too and waited for, so that each marks its notebook interrupted
    and ends its kernel: nothing keeps training after the runner has gone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # fresh workers: no state copied from here
    slots = context.Queue()  # handed to each worker as it starts (no manager process)
    for slot in _slots(jobs):
        slots.put(slot)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_setup, initargs=(slots, os.getpid()))
    results: dict[str, dict] = {}
    try:
        futures = {job.number: pool.submit(_execute, job, out, kernel, str(NOTEBOOK_DIR)) for job in todo}
        for number, future in futures.items():
            results[number] = future.result()
    except KeyboardInterrupt:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _stop_workers(pool, grace: float = 60.0) -> None:
    """Send each worker SIGTERM (it marks its notebook interrupted and shuts its kernel down),
    then wait for them; one still running after ``grace`` seconds is killed."""
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _forget_checkpoints(job: Job, out: Path) -> None:
    """--restart: remove the checkpoints the runner keeps for this notebook, so it trains again."""
    own = (out / "checkpoints" / job.source.stem).resolve()
    if str(own) == job.parameters.get("checkpoint_dir") and own.is_dir():
        shutil.rmtree(own)
        print(f"[{job.number}] {job.source.stem}: --restart, removed its checkpoints in {own}", flush=True)


def lock_folder(out: Path):
    """Create ``out`` and hold a lock on it while a run writes there; a second run (``reproduce``
    or ``train``) is refused (``casn_lite.files.lock_folder``)."""
    return files.lock_folder(out, "reproduce")


def summary_table(results: list[dict], out: Path) -> str:
    """One line per notebook: status, time and its headline metrics."""
    lines = [f"\nreproduce: {len(results)} notebook(s), results in {out}",
             f"{'notebook':<28}{'status':<8}{'seconds':>8}  metrics"]
    for r in results:
        if r["status"] == "ok":
            shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in r["metrics"].items() if isinstance(v, (int, float)))
        else:
            where = f" in cell {r['cell']}" if r.get("cell") is not None else ""
            shown = f"{r['status']}{where}: {r.get('error', '')}"
        lines.append(f"{r['notebook']:<28}{r['status']:<8}{r['seconds']:>8.1f}  {shown}")
    return "\n".join(lines)
