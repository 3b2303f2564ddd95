"""Batch reproduction: run the notebooks with papermill under a named profile.

    python -m casn_lite reproduce --profile {ci,cpu,gpu} [--only 00,01] [--data-root DIR] [--out DIR]

Each notebook's source of truth (``notebooks/NN_name.py``) is converted by jupytext,
executed by papermill with the profile's parameters, and saved with its outputs in
``runs/<profile>/NN_name.ipynb``, beside ``NN_name.metrics.json``: the JSON shown by
the notebook's last cell (tagged ``metrics``), read back from the executed notebook.
Profile, notebook and parameter names are checked before anything runs: papermill
would inject a misspelt parameter without a word.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import papermill
import yaml

__all__ = ["NOTEBOOK_DIR", "PROFILE_DIR", "notebooks", "profiles", "plan", "run", "ReproduceError"]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
PROFILE_DIR = ROOT / "profiles"


class ReproduceError(ValueError):
    """A profile, notebook or parameter name that does not exist."""


def notebooks() -> dict[str, Path]:
    """Notebook number ("00") -> its .py source of truth."""
    return {p.name[:2]: p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))}


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _parameters(source: Path) -> set[str]:
    """Names in the notebook's cell tagged 'parameters', as papermill reads them."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (source.stem + ".ipynb")
        nbformat.write(jupytext.read(source), path)
        return set(papermill.inspect_notebook(str(path)))


@dataclass
class Job:
    number: str
    source: Path
    parameters: dict = field(default_factory=dict)


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


def plan(profile: str, only: list[str] | None = None, data_root: str | None = None,
         arch: str | None = None) -> list[Job]:
    """The notebooks to run and their parameters; refuses unknown names with the valid ones.

    A profile's parameters come in layers, later ones winning: its ``defaults`` and
    ``notebooks``; with ``data_root``, its ``real_data`` section (paper-like settings for a
    real dataset); with ``arch``, its ``arch: {pcb: ...}`` section. With ``arch``, only the
    notebooks that have an ``arch`` parameter run."""
    if profile not in profiles():
        raise ReproduceError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles())}")
    spec = yaml.safe_load((PROFILE_DIR / f"{profile}.yaml").read_text()) or {}
    available = notebooks()
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
    return jobs


def _metrics(executed: Path) -> dict:
    """The JSON displayed by the cell tagged 'metrics' of an executed notebook."""
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if "metrics" in cell.metadata.get("tags", []):
            for output in cell.get("outputs", []):
                if "application/json" in output.get("data", {}):
                    return dict(output["data"]["application/json"])
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
    """The earlier result of this notebook, if it ran to the end with the same parameters."""
    if not record.is_file():
        return None
    earlier = json.loads(record.read_text())
    same = json.dumps(earlier.get("parameters"), sort_keys=True) == json.dumps(parameters, sort_keys=True, default=str)
    return earlier if earlier.get("status") == "ok" and same else None


def default_out(profile: str, data_root: str | None = None, arch: str | None = None) -> Path:
    """runs/<profile>[-<arch>][-<dataset folder>]: runs with different settings never mix."""
    name = profile + (f"-{arch}" if arch and arch != "ide" else "")
    name += f"-{Path(data_root).expanduser().resolve().name}" if data_root else ""
    return ROOT / "runs" / name


def _execute(job: Job, out: Path, kernel: str, cwd: str) -> dict:
    """Run one notebook with papermill; record its result (metrics read back) next to it."""
    executed = out / f"{job.source.stem}.ipynb"
    source_nb = out / f"{job.source.stem}.source.ipynb"
    nbformat.write(jupytext.read(job.source), source_nb)
    print(f"[{job.number}] {job.source.stem} {job.parameters or '(defaults)'}", flush=True)
    start = time.perf_counter()
    result = {"notebook": job.source.stem, "parameters": job.parameters, "status": "ok"}
    try:
        papermill.execute_notebook(source_nb, executed, parameters=job.parameters, kernel_name=kernel,
                                   cwd=cwd, progress_bar=False)
    except papermill.PapermillExecutionError as err:
        result.update(status="failed", cell=err.exec_count, error=f"{err.ename}: {err.evalue}")
    finally:
        source_nb.unlink(missing_ok=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["metrics"] = _metrics(executed) if executed.is_file() and result["status"] == "ok" else {}
    (out / f"{job.source.stem}.metrics.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def _worker_setup(slots) -> None:
    """A parallel worker takes one slot: a GPU it alone sees, or its share of the CPU cores.
    The notebook kernels it starts inherit this environment."""
    kind, value = slots.get()
    if kind == "gpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = value
    else:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = value


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
        out: str | Path | None = None, kernel: str = "python3", restart: bool = False,
        arch: str | None = None, jobs: int = 1) -> list[dict]:
    """Run the planned notebooks; a failure is recorded and the rest still run.

    Run again after an interruption, it skips the notebooks that already finished with the
    same parameters (unless ``restart``), and a notebook with a ``checkpoint_dir`` parameter
    resumes its training from the last checkpoint under ``out/checkpoints/``. With ``jobs``
    > 1, that many notebooks run at once, each on its own GPU (or its share of the cores)."""
    planned = plan(profile, only, data_root, arch)
    out = Path(out) if out else default_out(profile, data_root, arch)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    todo = []
    for job in planned:
        job.parameters.update(_runner_parameters(job, _parameters(job.source), profile, out))
        record = out / f"{job.source.stem}.metrics.json"
        if not restart and (earlier := _finished(record, job.parameters)) is not None:
            print(f"[{job.number}] {job.source.stem}: finished earlier, skipped (--restart runs it again)", flush=True)
            results[job.number] = earlier
        else:
            todo.append(job)
    if jobs <= 1:
        for job in todo:
            results[job.number] = _execute(job, out, kernel, str(NOTEBOOK_DIR))
    elif todo:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # fresh workers: no state copied from here
        slots = context.Manager().Queue()
        for slot in _slots(jobs):
            slots.put(slot)
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_setup, initargs=(slots,)) as pool:
            futures = {job.number: pool.submit(_execute, job, out, kernel, str(NOTEBOOK_DIR)) for job in todo}
            for number, future in futures.items():
                results[number] = future.result()
    ordered = [results[job.number] for job in planned]
    print(summary_table(ordered, out))
    return ordered


def summary_table(results: list[dict], out: Path) -> str:
    """One line per notebook: status, time and its headline metrics."""
    lines = [f"\nreproduce: {len(results)} notebook(s), results in {out}",
             f"{'notebook':<28}{'status':<8}{'seconds':>8}  metrics"]
    for r in results:
        if r["status"] == "ok":
            shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in r["metrics"].items() if isinstance(v, (int, float)))
        else:
            shown = f"failed in cell {r['cell']}: {r['error']}"
        lines.append(f"{r['notebook']:<28}{r['status']:<8}{r['seconds']:>8.1f}  {shown}")
    return "\n".join(lines)
