"""evaluate_ranking and its per-query reference, evaluate_ranking_reference: both against
cases worked by hand, and one against the other on random problems with ties, same-camera
matches, distractors and junk boxes."""

import numpy as np
import pytest
import torch

from casn_lite.evaluation import evaluate_ranking, evaluate_ranking_reference, pairwise_distance

BOTH = pytest.mark.parametrize("evaluate", [evaluate_ranking, evaluate_ranking_reference],
                               ids=["fast", "reference"])


@BOTH
def test_hand_worked_example(evaluate):
    # query 0: pid 1 seen by camera 0; query 1: pid 9, whose only gallery image is from its own camera
    q_pids, q_cams = np.array([1, 9]), np.array([0, 2])
    g_pids = np.array([1, 2, 1, 3, 1, 9])
    g_cams = np.array([0, 1, 1, 1, 2, 2])
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                     [0.9, 0.8, 0.7, 0.6, 0.5, 0.1]])
    res = evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank=4)
    # query 0: gallery 0 (pid 1, camera 0) is removed; ranking is pid 2, 1, 3, 1, 9
    # first match at rank 2 -> CMC = [0, 1, 1, 1]
    # AP = mean(1/2, 2/4) = 0.5; INP = 2 matches / rank of the last one (4) = 0.5
    # query 1: its only match is from its own camera -> skipped
    assert res["num_valid_queries"] == 1
    np.testing.assert_allclose(res["cmc"], [0, 1, 1, 1])
    assert res["mAP"] == pytest.approx(0.5)
    assert res["mINP"] == pytest.approx(0.5)


@BOTH
def test_perfect_and_worst_rankings(evaluate):
    q_pids, q_cams = np.array([1]), np.array([0])
    g_pids, g_cams = np.array([1, 1, 2, 3]), np.array([1, 2, 1, 1])
    best = evaluate(np.array([[0.0, 0.1, 0.5, 0.6]]), q_pids, g_pids, q_cams, g_cams)
    assert best["mAP"] == pytest.approx(1.0) and best["cmc"][0] == 1.0 and best["mINP"] == pytest.approx(1.0)
    worst = evaluate(np.array([[0.8, 0.9, 0.1, 0.2]]), q_pids, g_pids, q_cams, g_cams)
    # matches at ranks 3 and 4: AP = (1/3 + 2/4) / 2
    assert worst["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    np.testing.assert_allclose(worst["cmc"], [0, 0, 1, 1])
    assert worst["mINP"] == pytest.approx(2 / 4)


@BOTH
def test_ties_count_against_the_model(evaluate):
    # constant features: every distance equal. An honest metric must not call that perfect.
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids, g_cams = np.array([1, 2, 3, 4]), np.array([1, 1, 1, 1])
    res = evaluate(np.zeros((2, 4)), q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(res["cmc"], [0, 0, 0, 1])
    assert res["mAP"] == pytest.approx(0.25)


def random_problem(num_q, num_g, num_ids, num_cams, seed):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams, g_cams = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    # distances loosely related to identity, so rankings are neither trivial nor random
    dist = rng.random((num_q, num_g)) + 0.6 * (q_pids[:, None] != g_pids[None, :])
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_reference_with_ties_same_camera_matches_distractors_and_junk(seed):
    dist, qp, gp, qc, gc = random_problem(60, 400, 25, 4, seed)
    rng = np.random.default_rng(seed)
    dist = np.round(dist * 4) / 4  # few distinct values: many ties between matches and impostors
    gp[rng.random(len(gp)) < 0.1] = 0  # distractors
    gp[rng.random(len(gp)) < 0.05] = -1  # junk boxes
    qp[0], qc[0], gp[0], gc[0] = 99, 0, 99, 0  # a query whose only match is from its own camera
    assert ((gp[None] == qp[:, None]) & (gc[None] == qc[:, None])).any(), "same-camera matches to remove"
    expected = evaluate_ranking_reference(dist, qp, gp, qc, gc, max_rank=50)
    res = evaluate_ranking(dist, qp, gp, qc, gc, max_rank=50)
    assert res["num_valid_queries"] == expected["num_valid_queries"] < 60, "some queries have no match left"
    np.testing.assert_allclose(res["cmc"], expected["cmc"], atol=1e-12)
    assert res["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    assert res["mINP"] == pytest.approx(expected["mINP"], abs=1e-12)


def test_chunked_equals_unchunked_and_torch_equals_numpy():
    dist, qp, gp, qc, gc = random_problem(97, 300, 20, 3, 5)
    whole = evaluate_ranking(dist, qp, gp, qc, gc, chunk_size=1000)
    for chunk in (1, 7, 50):
        part = evaluate_ranking(dist, qp, gp, qc, gc, chunk_size=chunk)
        np.testing.assert_array_equal(part["cmc"], whole["cmc"])
        assert part["mAP"] == pytest.approx(whole["mAP"], abs=1e-12)
        assert part["mINP"] == pytest.approx(whole["mINP"], abs=1e-12)
    as_torch = evaluate_ranking(*(torch.as_tensor(a) for a in (dist, qp, gp, qc, gc)))
    np.testing.assert_allclose(as_torch["cmc"], whole["cmc"])
    assert as_torch["mAP"] == pytest.approx(whole["mAP"], abs=1e-9)


def test_max_rank_larger_than_gallery_is_clipped():
    dist, qp, gp, qc, gc = random_problem(5, 8, 3, 2, 3)
    res = evaluate_ranking(dist, qp, gp, qc, gc, max_rank=50)
    assert res["cmc"].shape == (8,)
    assert res["cmc"][-1] == 1.0  # every valid query finds its match somewhere


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="label lengths"):
        evaluate_ranking(np.zeros((2, 3)), [1, 2], [1, 2], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_ranking(np.zeros((1, 2)), [1], [2, 3], [0], [1, 1])


def test_distances_match_direct_computation():
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((4, 8)), rng.standard_normal((6, 8))
    eu = pairwise_distance(q, g, "euclidean").numpy()
    np.testing.assert_allclose(eu, ((q[:, None] - g[None]) ** 2).sum(-1), rtol=1e-4, atol=1e-4)
    cos = pairwise_distance(q, g, "cosine").numpy()
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, 1 - qn @ gn.T, atol=1e-5)
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise_distance(q, g, "manhattan")


def _same_camera_errors_by_hand(dist, q_pids, g_pids, q_cams, g_cams):
    """One query at a time, as notebook 01 counts them."""
    wrong = same = 0
    for i in range(len(q_pids)):
        kept = [g for g in range(len(g_pids)) if not (g_pids[g] == q_pids[i] and g_cams[g] == q_cams[i])]
        # ascending distance, at equal distance the impostor first
        top = min(kept, key=lambda g: (dist[i][g], g_pids[g] == q_pids[i]))
        if g_pids[top] != q_pids[i]:
            wrong += 1
            same += g_cams[top] == q_cams[i]
    return same / wrong if wrong else float("nan")


def test_same_camera_errors_counts_wrong_rank1_matches_from_the_querys_camera():
    from casn_lite.evaluation import same_camera_errors

    q_pids, q_cams = [1, 2, 3, 4], [0, 0, 1, 1]
    g_pids, g_cams = [1, 1, 2, 3, 5, 4], [0, 1, 1, 0, 1, 0]
    dist = np.array([[0.0, 0.5, 0.3, 0.9, 0.8, 0.9],   # own-camera match removed; person 2 (camera 1) wins: other camera
                     [0.9, 0.2, 0.9, 0.9, 0.9, 0.1],   # person 4 from camera 0, the query's: same camera
                     [0.9, 0.9, 0.9, 0.5, 0.5, 0.9],   # a tie: the impostor (person 5, camera 1: same) counts
                     [0.9, 0.9, 0.9, 0.9, 0.9, 0.1]])  # right
    assert same_camera_errors(dist, q_pids, g_pids, q_cams, g_cams) == pytest.approx(2 / 3)
    assert _same_camera_errors_by_hand(dist, q_pids, g_pids, q_cams, g_cams) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q_pids, q_cams = rng.integers(1, 6, 12), rng.integers(0, 3, 12)
        g_pids, g_cams = rng.integers(0, 6, 30), rng.integers(0, 3, 30)
        dist = rng.integers(0, 4, (12, 30)).astype(float)  # many ties
        mine = same_camera_errors(dist, q_pids, g_pids, q_cams, g_cams)
        assert mine == pytest.approx(_same_camera_errors_by_hand(dist, q_pids, g_pids, q_cams, g_cams), nan_ok=True)
    assert np.isnan(same_camera_errors(1 - np.eye(2), [1, 2], [1, 2], [0, 0], [1, 1])), "no wrong rank-1 match"
