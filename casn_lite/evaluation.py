"""Re-ID retrieval metrics: distances between features, CMC, mAP and mINP.

The protocol is the Market-1501 single-query one used across the re-ID literature
(and by torchreid's ``eval_market1501``):

* each query is ranked against the whole gallery by ascending distance;
* gallery images of the query's identity seen by the query's *own camera* are
  removed from that query's ranking (they would be too easy);
* a query with no remaining true match is skipped (``num_valid_queries`` counts
  the others);
* CMC@k is the fraction of valid queries whose first true match is within the
  top k; AP is the non-interpolated average precision over all true matches;
  INP (Ye et al., 2021) is ``num_matches / rank_of_the_last_match``.

``evaluate_ranking_reference`` is the protocol written as one reads it, one query at a
time with a full sort: the documented reference, slow. ``evaluate_ranking`` computes the
same numbers fast (the tests hold one against the other): with torch on the distance
matrix's device, one chunk of queries at a time, so a 10,000 x 100,000 matrix needs only a
few hundred MB.
A gallery image of another identity at exactly the same distance as a true match
is ranked before it (ties count against the model, so constant features score
near zero instead of perfectly).

Nothing non-finite is ranked: NaN or infinite features or distances (a diverged model)
raise ValueError instead of scoring, and labels must be whole numbers.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.stats import rankdata

__all__ = ["pairwise_distance", "evaluate_ranking", "evaluate_ranking_reference", "count_valid_queries",
           "FewValidQueries", "warn_if_few_valid", "same_camera_errors", "roc_auc"]

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(x: ArrayLike, device: torch.device | None = None) -> torch.Tensor:
    """Return ``x`` as a torch tensor (no copy when it already is one)."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t if device is None else t.to(device)


def _check_finite(t: torch.Tensor, what: str) -> None:
    """Refuse NaN or infinite values, saying how many rows hold them."""
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = int((~finite).reshape(len(t), -1).any(1).sum()) if t.dim() else 1
        raise ValueError(f"{what} are not finite: {bad} of {len(t) if t.dim() else 1} rows hold NaN or inf "
                         "(did training diverge?)")


def pairwise_distance(query: ArrayLike, gallery: ArrayLike, metric: str = "cosine") -> torch.Tensor:
    """Distance matrix [num_query, num_gallery] between two sets of feature rows.

    ``cosine``: 1 - cos(q, g), in [0, 2]. ``euclidean``: squared Euclidean distance
    ||q - g||^2 (ranking is the same as for the plain distance, and it is cheaper), computed
    after moving both sets by the gallery's mean: the same distances, but float32 keeps its
    precision for features far from the origin. Non-finite features raise ValueError.
    """
    q = _as_tensor(query).float()
    g = _as_tensor(gallery, q.device).float()
    _check_finite(q, "query features")
    _check_finite(g, "gallery features")
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
        return 1.0 - q @ g.T
    if metric == "euclidean":
        centre = g.mean(0, keepdim=True)
        q, g = q - centre, g - centre
        # ||q||^2 + ||g||^2 - 2 q.g, clamped at 0 against rounding
        sq = q.pow(2).sum(1, keepdim=True) + g.pow(2).sum(1) - 2.0 * (q @ g.T)
        return sq.clamp_min_(0.0)
    raise ValueError(f"unknown metric {metric!r}; choose 'cosine' or 'euclidean'")


def _labels(x: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    """Identity or camera labels as integers; fractional ones (1.2 and 1.7 are not one person)
    are refused instead of truncated."""
    t = _as_tensor(x, device)
    if t.is_floating_point() and not bool((torch.isfinite(t) & (t == t.round())).all()):
        raise ValueError(f"{name} must be whole numbers (labels), got values such as "
                         f"{t[~(torch.isfinite(t) & (t == t.round()))][0].item()}")
    return t.long()


def _distances(distmat: ArrayLike) -> torch.Tensor:
    """The distance matrix as floats (integers become float64); bool and non-finite refused."""
    dist = _as_tensor(distmat)
    if dist.dtype == torch.bool:
        raise ValueError("distmat is bool; pass distances as numbers (e.g. distmat.astype(float))")
    if not dist.is_floating_point():
        dist = dist.double()
    if dist.dim() == 2:
        _check_finite(dist, "distances")
    return dist


def _rank_chunk(
    dist: torch.Tensor,
    q_pids: torch.Tensor,
    q_camids: torch.Tensor,
    g_pids: torch.Tensor,
    g_camids: torch.Tensor,
    max_rank: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query CMC rows, AP, INP and validity for one chunk of queries.

    Instead of sorting the whole gallery for every query, we sort only its true
    matches (a few dozen) and count, for the m-th closest match, the *impostors*
    (gallery images of other identities) at a distance <= its own. Its 0-based
    position in the ranking is then ``m + impostors_before``: the same as a full
    sort, with ties between a match and an impostor counted against the match.
    Images of the query's identity from the query's own camera are simply ignored.
    """
    same_pid = g_pids[None, :] == q_pids[:, None]
    good = same_pid & (g_camids[None, :] != q_camids[:, None])  # true matches that count
    impostor = (~same_pid).to(dist.dtype)
    num_good = good.sum(1)
    valid = num_good > 0
    width = max(int(num_good.max()), 1)

    # distances of each query's true matches, sorted, padded with +inf: [C, width]
    rows, cols = good.nonzero(as_tuple=True)
    first_of_row = torch.cumsum(num_good, 0) - num_good
    slot = torch.arange(rows.numel(), device=dist.device) - first_of_row[rows]
    match_dist = torch.full((dist.shape[0], width), float("inf"), dtype=dist.dtype, device=dist.device)
    match_dist[rows, slot] = dist[rows, cols]
    match_dist = match_dist.sort(dim=1).values

    # bucket[k] = how many matches are strictly closer than gallery image k;
    # impostor k precedes the m-th match exactly when bucket[k] <= m
    bucket = torch.searchsorted(match_dist, dist.contiguous(), side="left")
    per_bucket = torch.zeros(dist.shape[0], width + 1, dtype=dist.dtype, device=dist.device)
    per_bucket.scatter_add_(1, bucket, impostor)
    impostors_before = torch.cumsum(per_bucket, dim=1)[:, :width].round().long()
    m = torch.arange(width, device=dist.device)
    position = m[None, :] + impostors_before  # 0-based rank of the m-th match
    is_match = m[None, :] < num_good[:, None]

    # CMC: a hit at rank k when the first match sits at position < k
    ranks = torch.arange(max_rank, device=dist.device)
    cmc = (position[:, :1] <= ranks[None, :]).double()
    # AP = mean over matches of precision at that match: (m + 1) / (position + 1)
    precision = torch.where(is_match, (m[None, :] + 1.0).double() / (position.double() + 1.0), 0.0)
    ap = precision.sum(1) / num_good.clamp_min(1)
    # INP = #matches / (position of the hardest match + 1)
    last = position.gather(1, (num_good - 1).clamp_min(0)[:, None]).squeeze(1)
    inp = num_good.double() / (last.double() + 1.0)
    return cmc, ap, inp, valid


def evaluate_ranking(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict:
    """Market-1501 single-query evaluation of a query x gallery distance matrix.

    Returns ``{"cmc": np.ndarray[max_rank], "mAP": float, "mINP": float,
    "num_valid_queries": int, "num_queries": int}``, with CMC, mAP and mINP as fractions in
    [0, 1], averaged over the valid queries only (``warn_if_few_valid`` says when they are few).
    ``chunk_size`` queries are ranked at a time (default: about 2**23 matrix
    cells per chunk); the result does not depend on it.
    """
    if max_rank < 1:
        raise ValueError(f"max_rank must be at least 1, got {max_rank}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    dist = _distances(distmat)
    if dist.dim() != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {tuple(dist.shape)}")
    num_q, num_g = dist.shape
    device = dist.device
    qp, qc = _labels(q_pids, "q_pids", device), _labels(q_camids, "q_camids", device)
    gp, gc = _labels(g_pids, "g_pids", device), _labels(g_camids, "g_camids", device)
    if qp.numel() != num_q or qc.numel() != num_q or gp.numel() != num_g or gc.numel() != num_g:
        raise ValueError(
            f"label lengths do not match distmat {num_q}x{num_g}: q_pids={qp.numel()}, "
            f"q_camids={qc.numel()}, g_pids={gp.numel()}, g_camids={gc.numel()}"
        )
    max_rank = min(max_rank, num_g)
    if chunk_size is None:
        chunk_size = max(1, (1 << 23) // max(num_g, 1))

    cmc_sum = torch.zeros(max_rank, dtype=torch.float64, device=device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=device)
    inp_sum = torch.zeros((), dtype=torch.float64, device=device)
    num_valid = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        cmc, ap, inp, valid = _rank_chunk(dist[start:stop], qp[start:stop], qc[start:stop], gp, gc, max_rank)
        cmc_sum += cmc[valid].sum(0)
        ap_sum += ap[valid].sum()
        inp_sum += inp[valid].sum()
        num_valid += valid.sum()

    n = int(num_valid)
    if n == 0:
        raise ValueError("no query has a true match in the gallery from another camera; check the split")
    return {
        "cmc": (cmc_sum / n).cpu().numpy(),
        "mAP": float(ap_sum / n),
        "mINP": float(inp_sum / n),
        "num_valid_queries": n,
        "num_queries": num_q,
    }


class FewValidQueries(UserWarning):
    """Fewer than half of the queries have a true match to be scored on."""


def count_valid_queries(q_pids, g_pids, q_camids, g_camids) -> int:
    """How many queries the protocol scores: those with a gallery image of the same identity
    from another camera (distance-free: known before any training)."""
    pairs = {(int(p), int(c)) for p, c in zip(g_pids, g_camids, strict=True)}
    cameras: dict[int, set[int]] = {}
    for p, c in pairs:
        cameras.setdefault(p, set()).add(c)
    return sum(bool(cameras.get(int(p), set()) - {int(c)}) for p, c in zip(q_pids, q_camids, strict=True))


def warn_if_few_valid(valid: int, total: int, what: str = "the scores rest") -> None:
    """Warn when fewer than half of ``total`` queries are valid: a score from a few queries
    reads as confident as one from thousands."""
    if total and 2 * valid < total:
        warnings.warn(f"only {valid} of {total} queries have a true match in the gallery from another camera; "
                      f"{what} on {valid} quer{'y' if valid == 1 else 'ies'}", FewValidQueries, stacklevel=3)


def evaluate_ranking_reference(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
) -> dict:
    """The Market-1501 protocol, one query at a time: what ``evaluate_ranking`` computes, in
    the form to read (and slow: a full sort of the gallery per query). Same arguments and
    result, without the input checks."""
    dist, q_pids, g_pids, q_camids, g_camids = (
        np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x)
        for x in (distmat, q_pids, g_pids, q_camids, g_camids))
    max_rank = min(max_rank, dist.shape[1])
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(dist.shape[0]):
        # the query's identity seen by the query's own camera is removed (too easy); every other
        # gallery image stays: distractors (pid 0) and junk boxes (pid -1) are impostors
        kept = ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        distance, is_match = dist[i, kept], g_pids[kept] == q_pids[i]
        if not is_match.any():
            continue  # no true match left: the query is skipped
        # ascending distance; at equal distance the impostor first (a tie counts against the model)
        order = np.lexsort((is_match, distance))
        match_ranks = np.flatnonzero(is_match[order])  # 0-based ranks of the true matches
        all_cmc.append(np.arange(max_rank) >= match_ranks[0])  # CMC@k: the first match within the top k
        precision = np.arange(1, len(match_ranks) + 1) / (match_ranks + 1)  # precision at each match
        all_ap.append(precision.mean())  # AP: their mean
        all_inp.append(len(match_ranks) / (match_ranks[-1] + 1))  # INP: matches / rank of the last one
    if not all_ap:
        raise ValueError("no query has a true match in the gallery from another camera; check the split")
    return {"cmc": np.mean(all_cmc, axis=0), "mAP": float(np.mean(all_ap)),
            "mINP": float(np.mean(all_inp)), "num_valid_queries": len(all_ap)}


def same_camera_errors(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                       g_camids: ArrayLike) -> float:
    """Of the queries whose rank-1 match is another person, the share whose wrong match was
    filmed by the query's own camera. On SynthPeople each camera films one scene, so such a
    match shares the query's background: a same-scene impostor. The gallery is ranked as the
    Market-1501 protocol ranks it (the query's identity in its own camera removed; at equal
    distance the impostor first). NaN when no rank-1 match is wrong."""
    dist = _distances(distmat)
    device = dist.device
    qp, qc = _labels(q_pids, "q_pids", device), _labels(q_camids, "q_camids", device)
    gp, gc = _labels(g_pids, "g_pids", device), _labels(g_camids, "g_camids", device)
    removed = (gp[None, :] == qp[:, None]) & (gc[None, :] == qc[:, None])
    impostor = gp[None, :] != qp[:, None]
    # rank-1: the smallest distance; among equals, an impostor before a true match
    key = dist.double().masked_fill(removed, math.inf)
    best = key.amin(dim=1, keepdim=True)
    tied_impostor = (key == best) & impostor
    top = torch.where(tied_impostor.any(1), tied_impostor.double().argmax(1), key.argmin(1))
    wrong = impostor.gather(1, top[:, None]).squeeze(1)
    if not wrong.any():
        return math.nan
    same_camera = gc[top] == qc
    return float((same_camera & wrong).sum() / wrong.sum())


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """ROC AUC of a verifier: the probability that a random positive (``labels`` true) scores
    above a random negative, a tie counting one half (Mann-Whitney U / (n_pos n_neg)). NaN
    without both classes. For the Siamese head: scores z_same - z_diff, labels same person."""
    scores = _as_tensor(scores).double().cpu().numpy().ravel()
    labels = _as_tensor(labels).bool().cpu().numpy().ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores, method="average")  # ties share the mean of their ranks
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
