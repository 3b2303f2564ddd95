"""Time evaluate_ranking on a Market-1501-sized problem (3,368 queries x 15,913 gallery).

    python benchmarks/evaluation.py [--repeats 3] [--queries 3368] [--gallery 15913]

Prints the best of ``repeats`` wall-clock runs on CPU (with torch's thread count)
and, when one is present, on the GPU, plus the metrics so runs can be compared.
Target (issue 2): under 3 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from casn_lite.evaluation import evaluate_ranking, pairwise_distance


def market_like_problem(num_q: int, num_g: int, num_ids: int = 750, dim: int = 512, seed: int = 0):
    """Random features with identity structure, Market-like pids and 6 cameras."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim)).astype(np.float32)
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams, g_cams = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
    q = centres[q_pids] + 2.5 * rng.standard_normal((num_q, dim)).astype(np.float32)
    g = centres[g_pids] + 2.5 * rng.standard_normal((num_g, dim)).astype(np.float32)
    return q, g, q_pids, g_pids, q_cams, g_cams


def best_time(fn, repeats: int) -> tuple[float, dict]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    q, g, qp, gp, qc, gc = market_like_problem(args.queries, args.gallery)
    dist = pairwise_distance(q, g, "euclidean")
    print(f"problem: {args.queries} x {args.gallery}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")

    seconds, res = best_time(lambda: evaluate_ranking(dist, qp, gp, qc, gc), args.repeats)
    print(f"cpu : {seconds:6.3f} s  rank-1 {res['cmc'][0]:.4f}  mAP {res['mAP']:.4f}  mINP {res['mINP']:.4f}")

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        d, tensors = dist.to(dev), [torch.as_tensor(a, device=dev) for a in (qp, gp, qc, gc)]

        def on_gpu():
            r = evaluate_ranking(d, *tensors)
            torch.cuda.synchronize()
            return r

        on_gpu()  # warm-up
        seconds, r = best_time(on_gpu, args.repeats)
        same = np.allclose(r["cmc"], res["cmc"]) and abs(r["mAP"] - res["mAP"]) < 1e-9
        print(f"cuda: {seconds:6.3f} s  rank-1 {r['cmc'][0]:.4f}  mAP {r['mAP']:.4f}  "
              f"({torch.cuda.get_device_name()}; same numbers as CPU: {same})")


if __name__ == "__main__":
    main()
