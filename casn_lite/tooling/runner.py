"""Batch reproduction: run the notebooks with papermill under a named profile.

    python -m casn_lite reproduce --profile {ci,cpu,gpu} [--only 00,01] [--data-root DIR] [--out DIR]

Each notebook's source of truth (``notebooks/NN_name.py``) is converted by jupytext,
executed by papermill with the profile's parameters, and saved with its outputs in
``runs/<profile>/NN_name.ipynb``, beside ``NN_name.metrics.json``: the JSON shown by
the notebook's last cell (tagged ``metrics``), read back from the executed notebook.
Profile, notebook and parameter names are checked before anything runs (``profiles.plan``):
papermill would inject a misspelt parameter without a word.

A run locks its output folder (a second run into it is refused), records a notebook whose
kernel dies as failed and goes on, and marks a notebook stopped by Ctrl-C or SIGTERM as
interrupted. Each notebook runs into a temporary file, moved into place with its record,
which holds the notebook's SHA-256: a notebook is skipped as finished only when it is the
one its record describes. Before anything runs, the runner checks each notebook's ``.py``
against its ``.ipynb`` (``pairs``), each profile value against the type and range
of the notebook's parameter, ``--data-root`` and ``--kernel`` (``kernels``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import jupytext
import nbformat
import papermill

from .. import saving
from . import locks, notebooks, signals
from .kernels import KERNEL_MANAGER, QUIET_KERNEL, check_kernel, default_kernel
from .notebooks import ROOT, parameter_defaults, parameter_names, write_notebook
from .profiles import Job, ReproduceError, check_data_root, plan
from .smoke import plan_mismatches, smoke_parameters, start_cache

__all__ = ["run", "default_out", "runner_parameters", "lock_folder", "summary_table"]


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


def runner_parameters(job: Job, names: set[str], profile: str, out: Path) -> dict:
    """What the runner adds on its own: where a notebook keeps checkpoints (so an interrupted
    run resumes), and the profile's name (recorded with results)."""
    extra = {}
    if "checkpoint_dir" in names and "checkpoint_dir" not in job.parameters:
        folder = (out / "checkpoints" / job.source.stem).resolve()
        # a folder of the project is named from notebooks/, where the kernel runs, so that an
        # executed notebook (a committed one too) names no machine's folders
        inside = folder.is_relative_to(ROOT) and notebooks.NOTEBOOK_DIR.resolve().is_relative_to(ROOT)
        extra["checkpoint_dir"] = os.path.relpath(folder, notebooks.NOTEBOOK_DIR) if inside else str(folder)
    if "profile" in names and "profile" not in job.parameters:
        extra["profile"] = profile
    return extra


def _finished(record: Path, parameters: dict, source: Path) -> dict | None:
    """The earlier result of this notebook, if it ran to the end from the same ``.py`` with the
    same parameters and its executed notebook is the one the record describes (a notebook
    replaced since, or left half-run by a killed run, is not)."""
    try:
        earlier = json.loads(record.read_text())
    except (OSError, ValueError):  # none yet, or left damaged by an older version: run it again
        return None
    same = (json.dumps(earlier.get("parameters"), sort_keys=True) == json.dumps(parameters, sort_keys=True, default=str)
            and earlier.get("source_sha256") == _digest(source))  # an edited notebook runs again
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
    result = {"notebook": job.source.stem, "parameters": job.parameters, "status": "ok",
              "source_sha256": _digest(job.source)}
    stop: KeyboardInterrupt | None = None
    executed = out / f"{job.source.stem}.ipynb"
    with saving.temporary(out / f"{job.source.stem}.source.ipynb", ".ipynb") as source_nb, \
            saving.temporary(executed, ".ipynb") as partial:
        nbformat.write(jupytext.read(job.source), source_nb)
        try:
            papermill.execute_notebook(source_nb, partial, parameters=job.parameters, kernel_name=kernel, cwd=cwd,
                                       progress_bar=False, extra_arguments=QUIET_KERNEL,
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
    saving.write_text(record, json.dumps(result, indent=1, default=str))


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
    write_notebook(executed, nb)


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
    With ``smoke``, the profile's code path runs on tiny data (``smoke``) into
    ``<out>-smoke``, from scratch, and the profile's GPU time is printed (``budget``),
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
        with start_cache((out / "start-cache").resolve()) if smoke else nullcontext():
            results = _run_planned(planned, profile, out, kernel, restart or smoke, jobs)
    ordered = [results[job.number] for job in planned]
    print(summary_table(ordered, out))
    if smoke:
        _report_estimate(planned, profile, arch, only, data_root, out, jobs)
    return ordered


def _prepare_smoke(planned: list[Job], out: Path) -> None:
    """Shrink each job to a smoke run whose ``runtime`` takes the GPU path, with an empty log
    and an empty cache of IDE starts."""
    log, cache = out / "smoke-steps.jsonl", out / "start-cache"
    log.unlink(missing_ok=True)
    shutil.rmtree(cache, ignore_errors=True)
    for job in planned:
        job.parameters = smoke_parameters(job.parameters, parameter_names(job.source), log.resolve(), job.number)


def _report_estimate(planned: list[Job], profile: str, arch: str | None, only: list[str] | None,
                     data_root: str | None, out: Path, jobs: int) -> None:
    """Print (and save as gpu-estimate.json) the GPU budget of the run the smoke run stood for
    (``budget``), and check the trainings the smoke run logged against the budget's
    plan of its own, smaller run (two seeds at most)."""
    from .budget import budget_table, gpu_run_budget, notebooks_budget, profile_budget

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
    saving.write_text(out / "gpu-estimate.json", json.dumps(result, indent=1))
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
        job.parameters.update(runner_parameters(job, parameter_names(job.source), profile, out))
        record = out / f"{job.source.stem}.metrics.json"
        if not restart and (earlier := _finished(record, job.parameters, job.source)) is not None:
            print(f"[{job.number}] {job.source.stem}: finished earlier, skipped (--restart runs it again)", flush=True)
            results[job.number] = earlier
        else:
            if restart:
                _forget_checkpoints(job, out)
            todo.append(job)
    if jobs <= 1:
        for job in todo:
            results[job.number] = _execute(job, out, kernel, str(notebooks.NOTEBOOK_DIR))
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
        futures = {job.number: pool.submit(_execute, job, out, kernel, str(notebooks.NOTEBOOK_DIR)) for job in todo}
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
    or ``train``) is refused (``locks.lock_folder``)."""
    return locks.lock_folder(out, "reproduce")


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
