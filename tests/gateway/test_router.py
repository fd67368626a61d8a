"""The routing policy on its own: traffic shares, sticky keys and shadow sampling."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from turnout.gateway.router import BUCKETS, Router, bucket_of
from turnout.store.records import Role, RoutingConfig

DRAWS = 2_000
TOLERANCE = 0.03


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(20_240_601)


def share_of(counts: Counter[int], version: int, total: int) -> float:
    return counts[version] / total


def router(**config: dict[int, float]) -> Router:
    return Router.of(RoutingConfig(champion=1, **config))


def key_per_bucket() -> dict[int, str]:
    """One sticky key landing in each of the 10,000 buckets."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < BUCKETS:
        keys.setdefault(bucket_of(f"key-{n}"), f"key-{n}")
        n += 1
    return keys


def test_a_20_percent_challenger_gets_20_percent_of_random_plans() -> None:
    plans = [router(challengers={2: 20}).plan() for _ in range(DRAWS)]
    counts = Counter(p.version for p in plans)
    assert share_of(counts, 2, DRAWS) == pytest.approx(0.20, abs=TOLERANCE)
    assert set(counts) == {1, 2}


def test_roles_follow_the_version() -> None:
    for plan in (router(challengers={2: 20}).plan() for _ in range(500)):
        assert plan.role is (Role.CHALLENGER if plan.version == 2 else Role.CHAMPION)


def test_two_challengers_get_their_own_shares() -> None:
    split = router(challengers={2: 10, 3: 30})
    counts = Counter(split.plan().version for _ in range(DRAWS))
    assert share_of(counts, 2, DRAWS) == pytest.approx(0.10, abs=TOLERANCE)
    assert share_of(counts, 3, DRAWS) == pytest.approx(0.30, abs=TOLERANCE)
    assert share_of(counts, 1, DRAWS) == pytest.approx(0.60, abs=TOLERANCE)


def test_the_same_key_always_gets_the_same_version() -> None:
    split = router(challengers={2: 20, 3: 30})
    for n in range(200):
        versions = {split.plan(f"customer-{n}").version for _ in range(25)}
        assert len(versions) == 1


def test_the_same_key_gets_the_same_version_in_a_new_router() -> None:
    """Every gateway worker builds its own router; they must agree on each key."""
    config = RoutingConfig(champion=1, challengers={2: 20})
    first, second = Router.of(config), Router.of(config)
    for n in range(500):
        assert first.plan(f"c{n}") == second.plan(f"c{n}")


def test_different_keys_spread_according_to_shares() -> None:
    split = router(challengers={2: 20})
    keys = 5_000
    counts = Counter(split.plan(f"customer-{n}").version for n in range(keys))
    assert share_of(counts, 2, keys) == pytest.approx(0.20, abs=TOLERANCE)


def test_buckets_cover_the_whole_range() -> None:
    buckets = {bucket_of(f"k{n}") for n in range(50_000)}
    assert min(buckets) == 0
    assert max(buckets) == BUCKETS - 1
    assert all(isinstance(b, int) for b in buckets)


def test_half_a_percent_is_exactly_50_buckets() -> None:
    split = router(challengers={2: 0.5, 3: 0.25})
    counts = Counter(split.plan(key).version for key in key_per_bucket().values())
    assert counts == {2: 50, 3: 25, 1: BUCKETS - 75}


@pytest.mark.parametrize(
    ("challengers", "expected"),
    [
        ({2: 33.33}, {2: 3_333}),
        ({2: 0.01}, {2: 1}),
        ({2: 99.99}, {2: 9_999}),
        ({2: 12.5, 3: 12.5, 4: 12.5}, {2: 1_250, 3: 1_250, 4: 1_250}),
    ],
)
def test_shares_are_exact_in_buckets(
    challengers: dict[int, float], expected: dict[int, int]
) -> None:
    split = router(challengers=challengers)
    counts = Counter(split.plan(key).version for key in key_per_bucket().values())
    assert {v: counts[v] for v in expected} == expected
    assert counts[1] == BUCKETS - sum(expected.values())


def test_a_100_percent_shadow_gets_every_request() -> None:
    split = router(shadows={3: 100})
    for plan in (split.plan() for _ in range(DRAWS)):
        assert plan.shadows == (3,)
        assert plan.version == 1


def test_a_30_percent_shadow_gets_about_30_percent() -> None:
    split = router(shadows={3: 30})
    mirrored = sum(3 in split.plan().shadows for _ in range(DRAWS))
    assert mirrored / DRAWS == pytest.approx(0.30, abs=TOLERANCE)


def test_shadows_are_sampled_independently_of_the_answering_version() -> None:
    split = router(challengers={2: 50}, shadows={3: 100, 4: 30})
    plans = [split.plan() for _ in range(DRAWS)]
    assert all(3 in p.shadows for p in plans)
    for version in (1, 2):
        answered = [p for p in plans if p.version == version]
        share = sum(4 in p.shadows for p in answered) / len(answered)
        assert share == pytest.approx(0.30, abs=0.05)


def test_a_shadow_never_answers() -> None:
    split = router(challengers={2: 20}, shadows={3: 100})
    assert all(split.plan(f"k{n}").version != 3 for n in range(DRAWS))


def test_champion_only_always_answers_with_the_champion() -> None:
    split = router()
    plans = [split.plan() for _ in range(DRAWS)] + [split.plan(f"k{n}") for n in range(DRAWS)]
    assert {(p.version, p.role, p.shadows) for p in plans} == {(1, Role.CHAMPION, ())}
