import pytest
import torch

from bimask import PERMUTATIONS, find_permutation, nm_mask, permutation_score


@pytest.mark.parametrize("strategy", sorted(PERMUTATIONS))
@pytest.mark.parametrize("pattern", ["2:4", "1:4", "2:8", "1:16"])
def test_every_strategy_returns_a_seeded_permutation(strategy, pattern, rng):
    w = torch.randn(64, 64, generator=rng)
    mf = nm_mask(w, pattern)
    a = find_permutation(w, mf, pattern, strategy, seed=7)
    b = find_permutation(w, mf, pattern, strategy, seed=7)
    assert sorted(a.tolist()) == list(range(64))
    assert torch.equal(a, b)


def test_random_keeps_the_best_candidate(rng):
    w = torch.randn(64, 64, generator=rng)
    mf = nm_mask(w, "1:4")
    best = permutation_score(mf, "1:4", find_permutation(w, mf, "1:4", "random", candidates=50))
    one = permutation_score(mf, "1:4", find_permutation(w, mf, "1:4", "random", candidates=1))
    assert best >= one


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "1:16"])
def test_greedy_and_local_search_beat_random(pattern):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 256, generator=g)
    mf = nm_mask(w, pattern)
    score = {
        s: permutation_score(mf, pattern, find_permutation(w, mf, pattern, s))
        for s in ("identity", "random", "greedy", "local_search")
    }
    assert score["greedy"] > score["random"] >= score["identity"] - 0.01 * score["identity"]
    assert score["local_search"] >= score["greedy"]


def test_score_upper_bound_is_reached_by_a_constructed_optimum():
    # rows built so that a known grouping keeps every forward weight: score = all kept
    m, n, k = 4, 1, 16
    rows = torch.zeros(8, k, dtype=torch.bool)
    for r in range(8):
        rows[r, (r % m) :: m] = True  # row r keeps column positions r%4, r%4+4, ...
    w = rows.float() + 0.1
    perfect = torch.arange(8)  # rows 0..3 are complementary, as are 4..7
    assert permutation_score(rows, f"{n}:{m}", perfect) == int(rows.sum())
    shuffled = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])
    assert permutation_score(rows, f"{n}:{m}", shuffled) < int(rows.sum())
    found = find_permutation(w, rows, f"{n}:{m}", "local_search")
    assert permutation_score(rows, f"{n}:{m}", found) == int(rows.sum())
