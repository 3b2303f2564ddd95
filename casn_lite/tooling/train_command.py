"""Train one variant from the command line, on one device or several (torchrun).

    python -m casn_lite train --variant "CASN(IDE)" --epochs 40 --out runs/train/casn
    torchrun --nproc_per_node 4 -m casn_lite train --variant "CASN(PCB)" --arch pcb \\
        --height 384 --width 128 --data-root data/Market-1501-v15.09.15 --out runs/train/pcb

Every process trains on its own share of each epoch's batches (samplers sharded by rank)
and DDP averages the gradients; rank 0 shows progress, saves checkpoints every epoch
(``--out``/checkpoints, resumed when run again with the same settings and data; refused
with other ones, unless ``--restart``), evaluates at the end, and exports the model for
inference (``--out``/model.pt).
"""

from __future__ import annotations

import argparse
import json
import math
from contextlib import ExitStack
from pathlib import Path

from ..ablation import VARIANTS, variant_loss
from ..data import SynthConfig, load_or_generate, pair_loader, reid_loaders
from ..distributed import cleanup, init_distributed, is_main_process, replicas_agree
from ..engine import JointLoader, TrainConfig, TrainingDiverged, evaluate, fit, seed_everything
from ..models import ARCHS, build_model, save_checkpoint
from ..saving import sweep_stale, write_text
from .locks import lock_folder

__all__ = ["add_arguments", "train", "check_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", default="CASN(IDE)", choices=list(VARIANTS), help="default: CASN(IDE)")
    parser.add_argument("--arch", choices=list(ARCHS), help="default: from the variant's name")
    parser.add_argument("--data-root", help="a real dataset folder (default: SynthPeople, generated)")
    parser.add_argument("--train-ids", type=int, default=96, help="SynthPeople training identities")
    parser.add_argument("--test-ids", type=int, default=96, help="SynthPeople test identities")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--pretrained", default="false", choices=["false", "true", "auto"])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--num-instances", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=16, help="pairs per step, per process (SA variants)")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for checkpoints, metrics.json and model.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--restart", action="store_true",
                        help="train from scratch over the checkpoints in --out (default: resume them, "
                             "refused when they were saved with other settings)")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before anything is loaded, values that would fail later (a division by zero, an
    empty history, a sampler that cannot fill a batch), naming the flag."""
    at_least = {"--epochs": (args.epochs, 1), "--batch-size": (args.batch_size, 1),
                "--num-instances": (args.num_instances, 1), "--pairs": (args.pairs, 1),
                "--workers": (args.workers, 0), "--height": (args.height, 16), "--width": (args.width, 16),
                "--train-ids": (args.train_ids, 1), "--test-ids": (args.test_ids, 1), "--seed": (args.seed, 0)}
    for flag, (value, least) in at_least.items():
        if value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")
    if args.batch_size % args.num_instances:
        raise ValueError(f"--batch-size {args.batch_size} must be a multiple of --num-instances {args.num_instances}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")


def _check_identities(data, args: argparse.Namespace) -> None:
    """A P x K batch needs P = batch size / K training identities."""
    per_batch = args.batch_size // args.num_instances
    if data.num_train_pids < per_batch:
        raise ValueError(f"{data.name} has {data.num_train_pids} training identities, and a batch needs "
                         f"{per_batch} (--batch-size {args.batch_size} / --num-instances {args.num_instances}); "
                         "lower --batch-size or raise --num-instances")


def train(args: argparse.Namespace) -> dict:
    """Train, evaluate (rank 0) and export; returns the metrics (empty on other ranks). Rank 0
    holds a lock on ``--out`` (a second run into it is refused) and first removes the
    temporary files a killed run left there."""
    check_arguments(args)
    out = Path(args.out)
    rank, world, device = init_distributed()
    try:
        with ExitStack() as stack:
            if is_main_process():
                stack.enter_context(lock_folder(out, "train"))
                for folder in (out, out / "checkpoints"):
                    sweep_stale(folder)
            return _train(args, out, rank, world, device)
    finally:
        cleanup()


def _train(args: argparse.Namespace, out: Path, rank: int, world: int, device) -> dict:
    seed_everything(args.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    arch = args.arch or VARIANTS[args.variant].arch
    data = load_or_generate(args.data_root, SynthConfig(train_ids=args.train_ids, test_ids=args.test_ids,
                                                        seed=args.seed))
    _check_identities(data, args)
    loaders = reid_loaders(data, args.height, args.width, args.batch_size, args.num_instances,
                           args.seed, args.workers, device=device)
    loaders.train.sampler.shard(rank, world)
    loader = loaders.train
    pretrained = "auto" if args.pretrained == "auto" else args.pretrained == "true"
    model = build_model(arch, args.backbone, data.num_train_pids, pretrained=pretrained)
    loss_fn = variant_loss(args.variant, feature_dim=model.feature_dim)
    if loss_fn.sa:
        pairs = pair_loader(data, args.height, args.width, args.pairs, len(loader) * world, seed=args.seed,
                            num_workers=args.workers, images=loaders.train_images)
        pairs.sampler.shard(rank, world)
        loader = JointLoader(loader, pairs)
    cfg = TrainConfig(epochs=args.epochs, optimizer=args.optimizer, lr=args.lr, schedule="cosine",
                      warmup_epochs=min(2.0, args.epochs / 10), checkpoint_dir=str(out / "checkpoints"),
                      resume=not args.restart, progress=not args.quiet, desc=f"{args.variant} ({world} process(es))")
    try:
        history = fit(model, loader, cfg, loss_fn, device)
    except TrainingDiverged as err:
        raise ValueError(f"{err}; lower --lr (now {args.lr:g})") from None
    agree = replicas_agree(model)  # DDP kept every process's weights identical
    if not is_main_process():
        return {}
    result = evaluate(model, loaders.query, loaders.gallery, device)
    metrics = {"variant": args.variant, "dataset": data.name, "processes": world, "replicas_agree": agree,
               **{k: result[k] for k in ("rank1", "rank5", "mAP", "mINP", "num_valid_queries", "num_queries")},
               "train_seconds": sum(h["seconds"] for h in history), "final_loss": history[-1]["loss"]}
    write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    save_checkpoint(model, out / "model.pt", (args.height, args.width), **metrics)
    print(json.dumps(metrics))
    return metrics
