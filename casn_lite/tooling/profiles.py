"""Profiles: the parameter sets in ``profiles/<name>.yaml`` and the plan of a run.

A profile's ``defaults`` and ``notebooks`` give parameters to the notebooks; its
``real_data`` section applies with ``--data-root``, its ``arch: {pcb: ...}`` section with
``--arch``. ``plan`` turns a profile into the notebooks to run (``Job``) and their
parameters, refusing before anything runs a misspelt section, profile, notebook or parameter
name (papermill would inject a misspelt parameter without a word), a value of the wrong type
or range for its parameter, and a notebook whose ``.py`` and ``.ipynb`` disagree (``pairs``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .notebooks import ROOT, declared_parameters, notebooks, parameter_names
from .pairs import check_pair

__all__ = ["PROFILE_DIR", "ReproduceError", "Job", "profiles", "read_profile", "check_sections", "plan",
           "check_data_root"]


PROFILE_DIR = ROOT / "profiles"


class ReproduceError(ValueError):
    """A profile, notebook, parameter or option that cannot be used (a busy output folder is
    ``locks.FolderBusy``)."""


SECTIONS = {"description", "defaults", "notebooks", "arch", "real_data"}  # a profile's top level
LAYER_SECTIONS = {"defaults", "notebooks"}  # inside real_data and arch.<name>


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


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
    declared = {job.number: declared_parameters(job.source) for job in jobs}
    comments: dict[str, str] = {}
    for params in declared.values():
        for name, (_, comment) in params.items():
            comments[name] = comments.get(name, "") + " " + comment
    for job in jobs:
        for name, value in job.parameters.items():
            if name not in declared[job.number]:
                continue
            problem = _value_problem(name, value, declared[job.number][name][0], comments.get(name, ""))
            if name == "runtime" and not problem:
                problem = _runtime_problem(value)
            if problem:
                default = declared[job.number][name][0]
                raise ReproduceError(f"profile {profile!r}: {name} for notebook {job.number} ({job.source.name}): "
                                     f"{problem}; its default is {default!r}")


def _runtime_problem(value) -> str | None:
    """Why ``value`` cannot be a notebook's ``runtime`` (``casn_lite.engine.Runtime``'s fields)."""
    if not isinstance(value, dict):
        return f"{value!r} is not a mapping of runtime settings"
    from ..engine import Runtime

    try:
        Runtime.from_parameters(value)
    except (TypeError, ValueError) as err:
        return str(err)
    return None


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


def read_profile(profile: str) -> dict:
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
    from ..models import ARCHS  # imported here: models loads torch, which a worker never needs

    def refuse_unknown(mapping, known: set[str], where: str) -> None:
        if not isinstance(mapping, dict):
            raise ReproduceError(f"profile {profile!r}: {where or 'the file'} must be a mapping of sections")
        for key in mapping:
            if key not in known:
                raise ReproduceError(f"profile {profile!r}: unknown section {where + str(key)!r}; "
                                     f"known: {', '.join(sorted(known))}")

    refuse_unknown(spec, SECTIONS, "")
    refuse_unknown(spec.get("real_data") or {}, LAYER_SECTIONS, "real_data.")
    refuse_unknown(spec.get("arch") or {}, set(ARCHS), "arch.")
    for arch, section in (spec.get("arch") or {}).items():
        refuse_unknown(section or {}, LAYER_SECTIONS, f"arch.{arch}.")


def plan(profile: str, only: list[str] | None = None, data_root: str | None = None,
         arch: str | None = None) -> list[Job]:
    """The notebooks to run and their parameters; refuses unknown names with the valid ones.

    A profile's parameters come in layers, later ones winning: its ``defaults`` and
    ``notebooks``; with ``data_root``, its ``real_data`` section (paper-like settings for a
    real dataset); with ``arch``, its ``arch: {pcb: ...}`` section. With ``arch``, only the
    notebooks that have an ``arch`` parameter run."""
    from ..models import ARCHS

    if profile not in profiles():
        raise ReproduceError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles())}")
    if arch is not None and arch not in ARCHS:
        raise ReproduceError(f"unknown arch {arch!r}; choose one of: {', '.join(sorted(ARCHS))}")
    spec = read_profile(profile)
    available = notebooks()
    if only is not None and not only:
        raise ReproduceError(f"no notebook chosen; choose from: {', '.join(available)}")
    chosen = only or list(available)
    for number in chosen:
        if number not in available:
            raise ReproduceError(f"unknown notebook {number!r}; choose from: {', '.join(available)}")
    names = {n: parameter_names(available[n]) for n in available}
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
    from ..data.datasets import DatasetLayoutError, check_evaluable, load_dataset

    try:
        check_evaluable(load_dataset("auto", data_root))
    except DatasetLayoutError as err:
        raise ReproduceError(f"--data-root: {err}") from None
