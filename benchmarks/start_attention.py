"""Where does an IDE start look, as it trains? Class-attention lift over the epochs.

    .venv/bin/python benchmarks/start_attention.py --epochs 30 --erase-p 0.0 [--seed 0] [--every 10]

Trains IDE from scratch (ResNet-18, Adam 1e-3, one warm-up epoch then cosine, as the
shared start of notebooks 02-05) on the attention study's SynthPeople set, and every
``--every`` epochs (and at the end) measures on 128 cross-camera test pairs: mAP, the class
Grad-CAM's empty-map rate and its lift on the person and on the identity cue (share of the
attention mass over share of the image; 1.0 is an even spread), and the same lift of the
true class's Grad-CAM on the training images. The reference line is the lift of an ideal
map at this feature-map size: each cell's share of person, upsampled as Grad-CAM is.
Prints one JSON line per measurement; ``--out FILE`` also appends them there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from casn_lite.ablation import variant_loss
from casn_lite.attention import grad_cam, mass_share, upsample
from casn_lite.attention_metrics import attention_lift
from casn_lite.data import (
    ImageDataset,
    SynthConfig,
    build_transforms,
    load_or_generate,
    reid_loaders,
    test_pair_loader,
)
from casn_lite.engine import (
    TrainConfig,
    default_device,
    evaluate,
    evaluate_attention,
    fit,
    seed_everything,
)
from casn_lite.models import build_model

DATA = SynthConfig(train_ids=48, test_ids=48, cameras=4, images_per_camera=4, seed=0)  # the study's


def person_lift(maps: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """(lift on the person, share of empty maps) of Grad-CAM maps [B, 1, h, w] over masks [B, H, W]."""
    share = mass_share(upsample(maps, masks.shape[-2:]), masks >= 1)
    area = (masks >= 1).flatten(1).float().mean(1)
    return attention_lift(share, area), (maps.flatten(1).amax(1) == 0).float().mean().item()


@torch.no_grad()
def ideal_lift(masks: torch.Tensor, feature_size: tuple[int, int]) -> float:
    """The lift of a map that holds each feature cell's share of person: the best a map at
    this resolution can do by covering the person evenly."""
    ideal = F.adaptive_avg_pool2d((masks >= 1).float()[:, None], feature_size)
    return person_lift(ideal, masks)[0]


def training_lift(model, probe, device) -> tuple[float, float]:
    """Lift and empty rate of the true class's Grad-CAM on the (unaugmented) training images."""
    model.eval()
    maps, masks = [], []
    for batch in probe:
        out = model(batch["image"].to(device))
        score = out.logits.gather(1, batch["pid"].to(device)[:, None]).squeeze(1)
        maps.append(grad_cam(score, out.feature_map).detach().cpu())
        masks.append(batch["mask"])
    return person_lift(torch.cat(maps), torch.cat(masks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--erase-p", type=float, default=0.0, help="random erasing probability (default 0)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=10, help="measure every this many epochs (and at the end)")
    parser.add_argument("--out", type=Path, help="append the JSON lines to this file too")
    args = parser.parse_args(argv)

    device = default_device()
    data = load_or_generate(None, DATA)
    seed_everything(args.seed)
    loaders = reid_loaders(data, args.height, args.width, 32, 4, args.seed, erase_p=args.erase_p)
    pairs = test_pair_loader(data, args.height, args.width, num_pairs=128, seed=0)
    probe = DataLoader(ImageDataset(data.train, build_transforms(args.height, args.width), mask_of=data.mask_path),
                       batch_size=64)
    model = build_model("ide", "resnet18", num_classes=data.num_train_pids, last_stride=1, embed_dim=512)
    feature_size = tuple(model.eval()(torch.zeros(1, 3, args.height, args.width)).feature_map.shape[-2:])
    reference = ideal_lift(torch.cat([b["mask1"] for b in pairs]), feature_size)
    print(json.dumps({"ideal_person_lift": round(reference, 3), "feature_map": feature_size}), flush=True)
    epochs_done = [0]

    def measure(m) -> dict:
        epochs_done[0] += 1
        epoch = epochs_done[0]
        if epoch % args.every and epoch != args.epochs:
            return {}
        attention = evaluate_attention(m, pairs, device).as_dict()
        lift, empty = training_lift(m, probe, device)
        row = {"epoch": epoch, "erase_p": args.erase_p, "seed": args.seed, "epochs": args.epochs,
               "mAP": evaluate(m, loaders.query, loaders.gallery, device)["mAP"],
               "class_person_lift": attention["class_person_lift"], "class_cue_lift": attention["class_cue_lift"],
               "class_empty": attention["class_empty"], "train_true_class_lift": lift, "train_true_class_empty": empty}
        line = json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(line + "\n")
        m.train()
        return {}

    tic = time.perf_counter()
    fit(model, loaders.train, TrainConfig(epochs=args.epochs, optimizer="adam", lr=1e-3, schedule="cosine",
                                          warmup_epochs=1.0, progress=False),
        variant_loss("IDE"), device, eval_fn=measure)
    print(json.dumps({"seconds": round(time.perf_counter() - tic)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
