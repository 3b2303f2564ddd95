"""Rank a folder of gallery images for one query image with a trained casn-lite model.

    # once, after training (e.g. at the end of notebook 01 or 04):
    #   from casn_lite.models import save_checkpoint
    #   save_checkpoint(model, "model.pt", (height, width), dataset=data.name)
    python examples/rank_gallery.py model.pt path/to/query.jpg path/to/gallery/ --topk 5
"""

import argparse
import sys

from casn_lite.data import ImageReadError
from casn_lite.inference import rank_gallery
from casn_lite.models import load_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a file written by casn_lite.models.save_checkpoint")
    parser.add_argument("query", help="the query image")
    parser.add_argument("gallery", help="a folder of gallery images")
    parser.add_argument("--topk", type=int, default=10, help="how many matches to list (default 10)")
    args = parser.parse_args()
    if args.topk < 1:
        parser.error(f"--topk must be at least 1, got {args.topk}")
    try:
        model, info = load_checkpoint(args.checkpoint)
        ranked = rank_gallery(model, info["input_size"], args.query, args.gallery, args.topk)
    except (FileNotFoundError, ImageReadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(ranked)} closest gallery images to {args.query} (cosine distance):")
    for rank, (path, distance) in enumerate(ranked, start=1):
        print(f"{rank:>3}  {distance:.4f}  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
