"""The attention study: in which regime do CASN's attention terms mean something?

    .venv/bin/python benchmarks/attention_study.py --seeds 0 1 2 [--settings a,b] [--out DIR]

For each *setting* (input size, length of the IDE start, lambda and its ramp, the Siamese
head's warm-up, how L_ia may lower itself) and each seed, the four variants IDE, IDE+IA,
IDE+SA and CASN(IDE) train from the same IDE start for the same number of epochs on the
same batches, and are measured the same way: retrieval (mAP first, rank-1), the start's
mean p(true class | image), and attention on cross-camera test pairs with SynthPeople's
masks (empty-map rate, attention on the person and on the identity cue as lift over
their area share, for the class Grad-CAM and the similarity attention; SA's own profile
distance and the similarity one on same-person pairs, empty maps excluded).

Every difference is paired: variant minus IDE on the same seed, trained on the same
augmented batches and measured on the same test pairs. It counts as an effect when a
paired t-test over the seeds, adjusted for the number of comparisons in the report
(Benjamini-Hochberg), gives q < 0.05 (``casn_lite.verdict``); each cell shows the mean
difference and its 95 % t interval over seeds. Records are appended to
``DIR/records.jsonl`` as each run finishes, so an interrupted study resumes where it
stopped; ``DIR/attention_study.md`` is the report.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from casn_lite.ablation import (
    StartConfig,
    ide_start,
    start_loaders,
    train_from,
    true_class_probability,
    variant_loss,
)
from casn_lite.data import (
    SynthConfig,
    load_or_generate,
    pair_loader,
    test_pair_loader,
)
from casn_lite.engine import JointLoader, TrainConfig, evaluate, evaluate_attention
from casn_lite.saving import append_record
from casn_lite.tooling.study import ARM_NAMES, compact_table, report

ROOT = Path(__file__).resolve().parents[1]
# 2: fixed test pairs, augmentation from the seed, alpha from the margin, L_ia without empty
# maps (issue 20); records without the field are the first protocol's (docs/attention_study/)
# 3: the verification arm IDE+SA(0), the Siamese head's AUC and L_bce on the test pairs, the
# positive control's data (issue 22; docs/positive_control.md)
PROTOCOL = 3
# the arms (casn_lite.tooling.study.ARM_NAMES): a paper variant, and for IDE+SA(0) the one setting
# that differs (L_sa = L_bce alone, consistency weight 0: does a gain come from verification or
# from attention consistency?)
ARMS = {"IDE": ("IDE", {}), "IDE+IA": ("IDE+IA", {}), "IDE+SA(0)": ("IDE+SA", {"consistency_weight": 0.0}),
        "IDE+SA": ("IDE+SA", {}), "CASN(IDE)": ("CASN(IDE)", {})}


@dataclass(frozen=True)
class Setting:
    """One regime of the study."""

    height: int = 64
    width: int = 32
    ide_epochs: int = 30  # the shared start: long enough for p(true class | image) to be high
    variant_epochs: int = 3  # then each variant from it
    lambda_ia: float = 1.0
    lambda_sa: float = 1.0
    ramp_epochs: float = 1.0  # lambdas grow from 0 over this many epochs (0: the paper's, none)
    head_warmup: int = 100  # steps of the Siamese head alone before SA starts (0: none)
    ia_gradient: str = "attention"  # "all": the paper's form, L_ia may also train the classifier
    lr: float = 1e-3
    pairs_per_batch: int = 16
    erase_p: float = 0.5  # random erasing of the training images
    control: bool = False  # the positive control's data (SynthConfig(control=True))
    tag_scale: float = 1.0  # the control's name-tag size (SynthConfig.tag_scale; version 2: 2)
    decoy: bool = False  # version 3 of the control: the decoy badge (SynthConfig(decoy=True))
    tag_moves: bool = False  # version 4: the name tag at a random height (SynthConfig(tag_moves=True))


# What each variant's run depends on: a setting that differs from an earlier one only in
# other knobs gives that variant the same run (same start, batches and loss), so its record
# is reused instead of trained again (marked "reused_from").
COMMON = ("height", "width", "ide_epochs", "variant_epochs", "lr", "pairs_per_batch", "erase_p", "control", "tag_scale",
          "decoy", "tag_moves")
DEPENDS_ON = {
    "IDE": COMMON,
    "IDE+IA": (*COMMON, "lambda_ia", "ramp_epochs", "ia_gradient"),
    "IDE+SA(0)": (*COMMON, "lambda_sa", "ramp_epochs", "head_warmup"),
    "IDE+SA": (*COMMON, "lambda_sa", "ramp_epochs", "head_warmup"),
    "CASN(IDE)": (*COMMON, "lambda_ia", "lambda_sa", "ramp_epochs", "head_warmup", "ia_gradient"),
}


BASE = Setting()
SETTINGS = {  # one knob at a time around the base, in the order they run
    "base": BASE,
    "large": replace(BASE, height=128, width=64),
    "paper-form": replace(BASE, ramp_epochs=0.0, head_warmup=0, ia_gradient="all"),
    "ia-all": replace(BASE, ia_gradient="all"),  # the paper's L_ia, with the warm-up and the ramp
    "short-start": replace(BASE, ide_epochs=10),
    "no-warmup": replace(BASE, head_warmup=0),
    "no-ramp": replace(BASE, ramp_epochs=0.0),
    "lambda-0.3": replace(BASE, lambda_ia=0.3, lambda_sa=0.3),
    "control": replace(BASE, control=True),  # the positive control: the base on data with shortcuts
    # version 2 of the control (docs/positive_control.md): 128 x 64, no random erasing, a tag
    # twice the size; and the default data in the same regime, to compare with
    "base-v2": replace(BASE, height=128, width=64, erase_p=0.0),
    "control-v2": replace(BASE, height=128, width=64, erase_p=0.0, control=True, tag_scale=2.0),
    # version 3: the default data plus a decoy (SA's consistency term's target), in version 2's
    # regime, so that base-v2 is its default data
    "control-v3": replace(BASE, height=128, width=64, erase_p=0.0, decoy=True),
    # version 4: version 2's control with the tag at a random height on the body (SA's target)
    "control-v4": replace(BASE, height=128, width=64, erase_p=0.0, control=True, tag_scale=2.0, tag_moves=True),
}
DATA = SynthConfig(train_ids=48, test_ids=48, cameras=4, images_per_camera=4, seed=0)

# --------------------------------------------------------------------------- one run
def same_run(record: dict, s: Setting, seed: int, variant: str) -> bool:
    """Whether ``record`` (of any setting) is the run ``variant`` would make under ``s``."""
    defaults = asdict(Setting())
    return (record["seed"] == seed and record["variant"] == variant and "reused_from" not in record
            and all(record.get(k, defaults[k]) == getattr(s, k) for k in DEPENDS_ON[variant]))


def arm_loss(arm: str, s: Setting, feature_dim: int):
    """The loss of one arm under setting ``s``: its paper variant with the setting's knobs, and
    the arm's own (IDE+SA(0): consistency weight 0)."""
    paper_variant, options = ARMS[arm]
    return variant_loss(paper_variant, feature_dim=feature_dim, lambda_ia=s.lambda_ia, lambda_sa=s.lambda_sa,
                        ramp_epochs=s.ramp_epochs, ia_gradient=s.ia_gradient, **options)


def run_setting_seed(name: str, s: Setting, seed: int, data, device, records: list[dict], write) -> None:
    """The start, then every variant not yet recorded, for one setting and seed; a variant
    another setting already ran the same way is reused, not trained again."""
    done = {(r["setting"], r["seed"], r["variant"]) for r in records}
    todo = []
    for variant in ARM_NAMES:
        if (name, seed, variant) in done:
            continue
        earlier = next((r for r in records if same_run(r, s, seed, variant)), None)
        if earlier is not None:
            write({**earlier, "setting": name, **asdict(s), "reused_from": earlier["setting"]})
        else:
            todo.append(variant)
    if not todo:
        return
    data = data(s)
    start_cfg = StartConfig(height=s.height, width=s.width, epochs=s.ide_epochs, seed=seed, erase_p=s.erase_p)
    loaders = start_loaders(data, start_cfg, device)
    start, info = ide_start(data, start_cfg, device, progress=False)
    p_true = true_class_probability(start, data, s.height, s.width, device)
    pairs = pair_loader(data, s.height, s.width, s.pairs_per_batch, len(loaders.train), seed=seed, erase_p=s.erase_p)
    joint = JointLoader(loaders.train, pairs)
    test_pairs = test_pair_loader(data, s.height, s.width, num_pairs=128, seed=0)
    for variant in todo:
        loss = arm_loss(variant, s, start.feature_dim)
        cfg = TrainConfig(epochs=s.variant_epochs, optimizer="adam", lr=s.lr, schedule="cosine",
                          warmup_epochs=0.5, progress=False)
        tic = time.perf_counter()
        run = train_from(start, joint, cfg, loss, device, seed, head_warmup=s.head_warmup)
        warmup = run["warmup"]
        retrieval = evaluate(run["model"], loaders.query, loaders.gallery, device)
        attention = evaluate_attention(run["model"], test_pairs, device, head=loss.head).as_dict()
        last = run["history"][-1]
        write({"setting": name, **asdict(s), "seed": seed, "variant": variant, "protocol": PROTOCOL,
               **{k: retrieval[k] for k in ("mAP", "rank1", "mINP", "num_valid_queries")},
               "ia_empty_last_epoch": last.get("ia_empty", math.nan),
               "start_p_true": p_true, "start_seconds": info["seconds"], **attention,
               "bce_after_warmup": warmup[-1] if warmup else math.nan,
               "bce_last_epoch": last.get("bce", math.nan), "train_seconds": time.perf_counter() - tic})
        print(f"{name:<12} seed {seed} {variant:<10} mAP {100 * retrieval['mAP']:5.1f}  rank-1 {100 * retrieval['rank1']:5.1f}"
              f"  class lift {attention['class_person_lift']:.2f}  empty {attention['class_empty']:.2f}"
              f"  ({time.perf_counter() - tic:.0f} s)", flush=True)


# --------------------------------------------------------------------------- the analysis
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "attention_study")
    parser.add_argument("--report-only", action="store_true", help="write the report from the records so far")
    parser.add_argument("--update-doc", type=Path, metavar="MD",
                        help="also replace the table between <!-- TABLE --> and <!-- /TABLE --> in this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "records.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if not args.report_only:  # a run resumes only records of this protocol; a report reads any
        older = [r for r in records if r.get("protocol", 1) != PROTOCOL]
        if older:
            print(f"{path}: {len(older)} records of an earlier protocol are left out (kept in the file)")
        records = [r for r in records if r.get("protocol", 1) == PROTOCOL]

    def write(record: dict) -> None:
        records.append(record)
        append_record(path, record)  # one line per finished run: a resumed study skips it

    command = "python benchmarks/attention_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.report_only:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        loaded = {}

        def data(s: Setting):  # the setting's data set, drawn and read once
            key = (s.control, s.tag_scale, s.decoy, s.tag_moves)
            if key not in loaded:
                loaded[key] = load_or_generate(None, replace(DATA, control=s.control, tag_scale=s.tag_scale,
                                                             decoy=s.decoy, tag_moves=s.tag_moves))
            return loaded[key]

        for name in names:
            for seed in args.seeds:
                run_setting_seed(name, SETTINGS[name], seed, data, device, records, write)
    text = report([r for r in records if r["setting"] in names], command)
    (args.out / "attention_study.md").write_text(text)
    if args.update_doc:
        update_doc(args.update_doc, compact_table([r for r in records if r["setting"] in names]))
    print(text)
    return 0


def update_doc(path: Path, table: list[str]) -> None:
    """Put ``table`` between the file's one pair of TABLE markers (replacing what was there)."""
    text = path.read_text()
    begin, end = "<!-- TABLE -->", "<!-- /TABLE -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"{path}: needs exactly one {begin} ... {end} pair")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    path.write_text(head + begin + "\n" + "\n".join(table) + "\n" + end + tail)


if __name__ == "__main__":
    raise SystemExit(main())
