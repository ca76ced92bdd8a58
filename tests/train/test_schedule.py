"""Tests for alae_fast.train.schedule (progressive-growing lod schedule and blend factor)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from alae_fast.train.schedule import EpochPlan
from alae_fast.train.schedule import LodSchedule


def sched(epochs_per_lod=4, layer_count=3, batch_sizes=(128, 64, 32), lrs=(0.0015, 0.002, 0.003), dataset_size=100):
    return LodSchedule(
        layer_count=layer_count,
        epochs_per_lod=epochs_per_lod,
        batch_sizes=batch_sizes,
        learning_rates=lrs,
        dataset_size=dataset_size,
    )


def test_lod_per_epoch():
    s = sched()
    expected = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    assert [s.lod(e) for e in range(20)] == expected
    assert [s.plan(e).lod for e in range(20)] == expected
    assert s.lod(1000) == 2


def test_in_transition_epochs():
    s = sched()
    flagged = [e for e in range(40) if s.plan(e).in_transition]
    assert flagged == [4, 5, 8, 9]


def test_clamped_epochs_past_last_level_not_in_transition():
    # epochs 12, 13 would be the first half of lod 3, which does not exist (clamped to 2)
    s = sched()
    assert s.plan(12).lod == 2 and not s.plan(12).in_transition
    assert s.blend(12, 0) == 1.0
    assert s.blend(13, 50) == 1.0


def blend_formula(t):
    return math.sin(t * math.pi - math.pi / 2) * 0.5 + 0.5


def test_blend_outside_transitions_is_one():
    s = sched()
    for e in [0, 1, 2, 3, 6, 7, 10, 11, 12, 30]:
        for seen in [0, 1, 50, 99]:
            assert s.blend(e, seen) == 1.0


def test_blend_known_values():
    s = sched()
    # transition of lod 1 spans epochs 4, 5 = 200 images
    assert s.blend(4, 0) == pytest.approx(0.0, abs=1e-12)
    assert s.blend(5, 0) == pytest.approx(0.5, abs=1e-12)  # t = 100 / 200
    assert s.blend(4, 50) == pytest.approx((1 - math.cos(math.pi / 4)) / 2, abs=1e-12)  # t = 1/4
    assert s.blend(5, 50) == pytest.approx((1 + math.cos(math.pi / 4)) / 2, abs=1e-12)  # t = 3/4
    assert s.blend(5, 100) == pytest.approx(1.0, abs=1e-12)  # end of the half
    # same for lod 2
    assert s.blend(8, 0) == pytest.approx(0.0, abs=1e-12)
    assert s.blend(9, 0) == pytest.approx(0.5, abs=1e-12)
    # the stated formula at a few points
    for epoch, seen in [(4, 10), (4, 73), (5, 1), (5, 99), (9, 37)]:
        t = ((epoch % 4) * 100 + seen) / 200.0
        assert s.blend(epoch, seen) == pytest.approx(blend_formula(t), abs=1e-12)
    # Known values where cos(pi t) is exact: 60 images an epoch make the transition 120 images,
    # t = seen / 120, and sin(pi t - pi/2) / 2 + 1/2 = (1 - cos(pi t)) / 2.
    s60 = sched(dataset_size=60)
    for epoch, seen, value in [
        (4, 20, (2 - math.sqrt(3)) / 4),  # t = 1/6: cos 30 deg = sqrt(3)/2
        (4, 40, 0.25),  # t = 1/3: cos 60 deg = 1/2
        (5, 0, 0.5),  # t = 1/2: cos 90 deg = 0
        (5, 20, 0.75),  # t = 2/3: cos 120 deg = -1/2
        (5, 40, (2 + math.sqrt(3)) / 4),  # t = 5/6: cos 150 deg
        (8, 40, 0.25),
    ]:  # lod 2's transition, t = 1/3
        assert s60.blend(epoch, seen) == pytest.approx(value, abs=1e-12)


def test_blend_monotone_within_transition():
    s = sched()
    for first in (4, 8):
        values = [s.blend(e, i) for e in (first, first + 1) for i in range(0, 100, 3)]
        assert values[0] == pytest.approx(0.0, abs=1e-12)
        assert all(b > a for a, b in zip(values, values[1:]))
        assert all(0.0 <= v <= 1.0 for v in values)


def test_blend_odd_epochs_per_lod():
    # epochs_per_lod=3: half = 1 epoch -> only the first epoch of each level fades in
    s = sched(epochs_per_lod=3, dataset_size=40)
    assert [e for e in range(12) if s.plan(e).in_transition] == [3, 6]
    assert s.blend(3, 20) == pytest.approx(0.5, abs=1e-12)
    assert s.blend(3, 10) == pytest.approx(blend_formula(0.25), abs=1e-12)
    assert s.blend(4, 0) == 1.0


def test_epochs_per_lod_zero_final_lod_always():
    s = sched(epochs_per_lod=0)
    for e in range(10):
        plan = s.plan(e)
        assert plan.lod == 2
        assert not plan.in_transition
        assert plan.batch_size == 32
        assert plan.learning_rate == 0.003
        assert s.blend(e, 0) == 1.0
        assert s.blend(e, 57) == 1.0


def test_epochs_per_lod_one_never_in_transition():
    s = sched(epochs_per_lod=1)
    assert [s.lod(e) for e in range(5)] == [0, 1, 2, 2, 2]
    for e in range(6):
        assert not s.plan(e).in_transition
        assert s.blend(e, 0) == 1.0
        assert s.blend(e, 99) == 1.0


def test_batch_sizes_and_learning_rates_per_lod():
    s = sched(layer_count=5, batch_sizes=[256, 128], lrs=[0.001, 0.002, 0.004], epochs_per_lod=2)
    plans = [s.plan(e) for e in range(12)]
    assert [p.lod for p in plans] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
    assert [p.batch_size for p in plans] == [256, 256] + [128] * 10
    assert [p.learning_rate for p in plans] == [0.001, 0.001, 0.002, 0.002] + [0.004] * 8
    assert plans[2] == EpochPlan(lod=1, in_transition=True, batch_size=128, learning_rate=0.002)
    assert plans[3] == EpochPlan(lod=1, in_transition=False, batch_size=128, learning_rate=0.002)


def test_single_entry_lists_and_generators():
    s = LodSchedule(
        layer_count=3, epochs_per_lod=2, batch_sizes=iter([16]), learning_rates=(x for x in [0.5]), dataset_size=10
    )
    assert [(s.plan(e).batch_size, s.plan(e).learning_rate) for e in range(6)] == [(16, 0.5)] * 6


def test_epoch_plan_frozen():
    plan = EpochPlan(lod=1, in_transition=False, batch_size=8, learning_rate=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.lod = 2
