"""A stronger start: does an IDE start grown from a SynthPeople-pretrained trunk know its
training people better, and look more at the person, than one from scratch?

    .venv/bin/python benchmarks/stronger_start.py --seeds 0 1 2 [--out runs/stronger_start.jsonl]
    .venv/bin/python benchmarks/stronger_start.py --height 128 --width 64 --erase-p 0   # the cpu profile's regime

The paper's IDE starts from ImageNet weights; this project cannot download them, so its
stand-in is ``StartConfig(pretrained="synthpeople")``: the trunk of an IDE trained on
another SynthPeople world (``casn_lite.ablation.PRETRAINING``: 384 people of seed 1, none of
them the study's, 20 epochs), from which the attention study's IDE start then trains as
usual. For each seed, the study's ``base`` start from scratch and the pretrained one, at the
study's size and length (or ``--height``/``--width``/``--erase-p``'s; the pretraining is done at
the same size and erasing), are measured the same way: mean p(true class | image) on the
unaugmented training images, retrieval on the test split, and the class Grad-CAM on the
study's 128 fixed cross-camera test pairs (empty maps; lift on the person: the share of the
attention mass on it over its share of the image). Each difference is paired by seed and
tested by a paired t-test (``casn_lite.verdict``). One line of JSON per start is appended
to ``--out``, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from casn_lite.ablation import (
    PRETRAINING,
    StartConfig,
    ide_start,
    start_loaders,
    true_class_probability,
)
from casn_lite.data import SynthConfig, load_or_generate, test_pair_loader
from casn_lite.engine import evaluate, evaluate_attention
from casn_lite.saving import append_record
from casn_lite.verdict import adjust, paired_difference

ROOT = Path(__file__).resolve().parents[1]
DATA = SynthConfig(train_ids=48, test_ids=48, cameras=4, images_per_camera=4, seed=0)  # the study's
STARTS = ("scratch", "synthpeople")
KEYS = ("p_true", "mAP", "rank1", "class_person_lift", "class_cue_lift", "class_empty")


def measure(name: str, seed: int, data, device: torch.device, height: int, width: int, epochs: int,
            erase_p: float = 0.5) -> dict:
    """One start, trained (or loaded from the cache) and measured."""
    cfg = StartConfig(height=height, width=width, epochs=epochs, seed=seed, erase_p=erase_p,
                      pretrained="synthpeople" if name == "synthpeople" else False)
    tic = time.perf_counter()
    model, info = ide_start(data, cfg, device, progress=False)
    loaders = start_loaders(data, cfg, device)
    retrieval = evaluate(model, loaders.query, loaders.gallery, device)
    attention = evaluate_attention(model, test_pair_loader(data, height, width, num_pairs=128, seed=0), device)
    return {"start": name, "seed": seed, "height": height, "width": width, "epochs": epochs, "erase_p": erase_p,
            "pretraining": {"train_ids": PRETRAINING.data.train_ids, "seed": PRETRAINING.data.seed,
                            "epochs": PRETRAINING.epochs} if name == "synthpeople" else None,
            "p_true": true_class_probability(model, data, height, width, device),
            "mAP": retrieval["mAP"], "rank1": retrieval["rank1"],
            **{k: v for k, v in attention.as_dict().items() if k.startswith("class_")},
            "cached": info["cached"], "seconds": time.perf_counter() - tic}


def report(records: list[dict]) -> list[str]:
    """Per quantity: each start's mean, and the paired difference pretrained - scratch."""
    by = {(r["start"], r["seed"]): r for r in records}
    seeds = sorted(sd for (s, sd) in by if s == "synthpeople" and ("scratch", sd) in by)
    lines = [f"seeds {seeds}: pretrained (synthpeople) - scratch, paired by seed; q: Benjamini-Hochberg "
             f"over the {len(KEYS)} quantities",
             "| quantity | scratch | pretrained | difference [95 % t interval] | p | q |", "|---|---|---|---|---|---|"]
    tests = {key: paired_difference([by[("scratch", sd)][key] for sd in seeds],
                                    [by[("synthpeople", sd)][key] for sd in seeds]) for key in KEYS}
    q = dict(zip(KEYS, adjust([d.p for d in tests.values()]), strict=True))
    for key in KEYS:
        a = [by[("scratch", sd)][key] for sd in seeds]
        b = [by[("synthpeople", sd)][key] for sd in seeds]
        d = tests[key]
        scale = 100 if key in ("mAP", "rank1") else 1
        interval = "" if d.n < 2 else " [{:+.2f}, {:+.2f}]".format(*(scale * v for v in d.interval()))
        mean_a, mean_b = (scale * sum(v) / len(v) if v else math.nan for v in (a, b))
        lines.append(f"| {key} | {mean_a:.2f} | {mean_b:.2f} | {scale * d.mean:+.2f}{interval} | "
                     f"{'' if d.p != d.p else f'{d.p:.3g}'} | {'' if q[key] != q[key] else f'{q[key]:.3g}'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30, help="the IDE start's epochs (the study's: 30)")
    parser.add_argument("--erase-p", type=float, default=0.5, help="random erasing of both starts (the study's: 0.5)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "stronger_start.jsonl")
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.is_file() else []
    for r in records:
        r.setdefault("erase_p", 0.5)  # the first records' (before --erase-p)

    def mine(r: dict) -> bool:  # a record of this command's size, length and erasing
        return (r["height"], r["width"], r["epochs"], r["erase_p"]) == (args.height, args.width, args.epochs,
                                                                         args.erase_p)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_or_generate(None, DATA)
    for seed in args.seeds:
        for name in STARTS:
            if any(r["start"] == name and r["seed"] == seed and mine(r) for r in records):
                continue
            record = measure(name, seed, data, device, args.height, args.width, args.epochs, args.erase_p)
            records.append(record)
            append_record(args.out, record)
            print(f"seed {seed} {name:<12} p(true) {record['p_true']:.2f}  mAP {100 * record['mAP']:.1f}  "
                  f"class lift {record['class_person_lift']:.2f}  empty {record['class_empty']:.2f}  "
                  f"({record['seconds']:.0f} s)", flush=True)
    print("\n".join(report([r for r in records if mine(r)])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
