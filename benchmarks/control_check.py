"""The positive control's manipulation check: does IDE fall for the shortcuts built into it?

    .venv/bin/python benchmarks/control_check.py --seeds 0 1 2 [--height 128 --width 64]
    .venv/bin/python benchmarks/control_check.py --height 128 --width 64 --erase-p 0 --tag-scale 2   # v2
    .venv/bin/python benchmarks/control_check.py --height 128 --width 64 --erase-p 0 --decoy         # v3
    .venv/bin/python benchmarks/control_check.py --height 128 --width 64 --erase-p 0 --tag-scale 2 --tag-moves  # v4

A positive control can only show that a term fixes a failure if the failure is there. On
``SynthConfig(control=True)`` the name tag identifies every training person on every
training image: an IDE start that reads it should know its training people far better than
on the default data (mean p(true class | image) near 1), and attend to the tag more than an
even spread (class Grad-CAM lift on the tag above 1); the camera sign, if IDE latches onto
it, draws attention too (lift on the sign above 1). For each seed, the attention study's
IDE start (30 epochs, random erasing 0.5, cached) on the default data and on the control,
measured the same way; the differences are paired by seed. One JSON line per start is
appended to ``--out``. ``--erase-p`` and ``--tag-scale`` change the start's random erasing
and the control's name-tag size (v2 of the control: no erasing, a tag twice as tall and
wide; docs/positive_control.md); a record is found again by size, erasing and tag size.
``--decoy`` checks version 3 instead of the name-tag control: the default data plus a decoy
badge (``SynthConfig(decoy=True)``), where IDE should attend to the decoy (class lift on it),
attend less consistently on same-person pairs where a view shows it (profile distance on
those pairs minus on pairs where neither does) and retrieve worse (the test decoys mislead).
``--tag-moves`` checks version 4: version 2's control with the name tag at a random height
on the body in each image, the same three conditions asked of the tag. The default data's
starts are shared by every version (same size and erasing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from casn_lite.ablation import StartConfig, ide_start, start_loaders, true_class_probability
from casn_lite.data import SynthConfig, load_or_generate, test_pair_loader
from casn_lite.engine import evaluate, evaluate_attention
from casn_lite.saving import append_record
from casn_lite.tooling.study import SHORTCUT_KEYS, shortcut_conditions
from casn_lite.verdict import paired_difference

ROOT = Path(__file__).resolve().parents[1]
DATA = SynthConfig(train_ids=48, test_ids=48, cameras=4, images_per_camera=4, seed=0)  # the study's
KEYS = ("p_true", "mAP", "class_person_lift", "class_tag_lift", "class_sign_lift", "sign_lift")
DECOY_KEYS = ("p_true", "mAP", "class_person_lift", "class_decoy_lift", "decoy_lift", "positive_distance_decoy",
              "positive_distance_clear")


def measure(kind: str, seed: int, height: int, width: int, device: torch.device, erase_p: float = 0.5,
            tag_scale: float = 1.0, tag_moves: bool = False) -> dict:
    """One start (``kind``: "default", "control" or "decoy") trained or loaded, and measured."""
    control = kind == "control"
    data = load_or_generate(None, replace(DATA, control=control, tag_scale=tag_scale if control else 1.0,
                                          tag_moves=tag_moves and control, decoy=kind == "decoy"))
    cfg = StartConfig(height=height, width=width, epochs=30, seed=seed, erase_p=erase_p)
    tic = time.perf_counter()
    model, info = ide_start(data, cfg, device, progress=False)
    loaders = start_loaders(data, cfg, device)
    retrieval = evaluate(model, loaders.query, loaders.gallery, device)
    attention = evaluate_attention(model, test_pair_loader(data, height, width, num_pairs=128, seed=0), device)
    return {"data": kind, "seed": seed, "height": height, "width": width,
            "erase_p": erase_p, "tag_scale": tag_scale, **({"tag_moves": True} if tag_moves and control else {}),
            "p_true": true_class_probability(model, data, height, width, device), "mAP": retrieval["mAP"],
            **attention.as_dict(), "cached": info["cached"], "seconds": time.perf_counter() - tic}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--erase-p", type=float, default=0.5, help="the start's random erasing (default 0.5)")
    parser.add_argument("--tag-scale", type=float, default=1.0, help="the control's name-tag size (default 1)")
    parser.add_argument("--decoy", action="store_true", help="check version 3 (the decoy) instead of the name tag")
    parser.add_argument("--tag-moves", action="store_true", help="version 4: the name tag at a random height")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "control_check.jsonl")
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.is_file() else []
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shortcut = "decoy" if args.decoy else "control"  # the data set checked against the default data
    lift = SHORTCUT_KEYS["decoy" if args.decoy else "tag"][0]  # IDE's class attention on its shortcut

    def this_setting(r: dict) -> bool:  # records written before v2 had erasing 0.5 and a tag of size 1
        return (r["height"] == args.height and r.get("erase_p", 0.5) == args.erase_p
                and (r["data"] != "control" or (r.get("tag_scale", 1.0) == args.tag_scale
                                                 and r.get("tag_moves", False) == args.tag_moves)))

    for seed in args.seeds:
        for name in ("default", shortcut):
            if any(r["data"] == name and r["seed"] == seed and this_setting(r) for r in records):
                continue
            record = measure(name, seed, args.height, args.width, device, args.erase_p, args.tag_scale,
                             args.tag_moves)
            records.append(record)
            append_record(args.out, record)
            print(f"{args.height}x{args.width} seed {seed} {name:<8} p(true) {record['p_true']:.2f}  "
                  f"mAP {100 * record['mAP']:.1f}  {shortcut} lift {record.get(lift, float('nan')):.2f}  "
                  f"({record['seconds']:.0f} s)", flush=True)
    by = {(r["data"], r["seed"]): r for r in records if this_setting(r)}
    seeds = sorted(sd for (d, sd) in by if d == shortcut and ("default", sd) in by)
    print(f"{args.height} x {args.width}, erasing {args.erase_p}, "
          + ("the decoy" if args.decoy else f"tag x{args.tag_scale:g}" + (", moving" if args.tag_moves else ""))
          + f", seeds {seeds}: "
          f"{shortcut} - default, paired by seed")
    for key in DECOY_KEYS if args.decoy else KEYS:
        a = [by[("default", sd)].get(key, float("nan")) for sd in seeds]
        b = [by[(shortcut, sd)].get(key, float("nan")) for sd in seeds]
        d = paired_difference(a, b)
        shown = " ".join(f"{v:.2f}" for v in b)
        print(f"  {key:<18} {shortcut} {shown}  (default {' '.join(f'{v:.2f}' for v in a)})  "
              f"difference {d.mean:+.2f}" + ("" if d.p != d.p else f", p = {d.p:.3g}"))
    if (args.decoy or args.tag_moves) and seeds:
        print(f"version {3 if args.decoy else 4}'s pre-registered conditions (docs/positive_control.md):")
        for line in shortcut_conditions([by[(shortcut, sd)] for sd in seeds], [by[("default", sd)] for sd in seeds],
                                        "decoy" if args.decoy else "tag"):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
