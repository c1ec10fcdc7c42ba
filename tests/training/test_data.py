"""A run's data: the evaluation batch plan of a fold under a strategy (no training here)."""

from __future__ import annotations

import pytest

from training.data import eval_batch_plan


@pytest.mark.parametrize(
    "n,replicas,max_b,expected",
    [
        (100, 1, 8, (8, False)),  # one replica: the largest batch
        (6, 2, 4, (3, False)),  # 6 = one full batch of 2 x 3
        (161, 2, 8, (7, False)),  # b=8: 161 % 16 = 1 leaves a replica empty; b=7: 161 % 14 = 7
        (7, 2, 8, (2, False)),  # b=3: 7 % 6 = 1 fails; b=2: 7 % 4 = 3 splits 2 + 1
        (5, 2, 4, (2, True)),  # b=2: 5 % 4 = 1 and b=1: 5 % 2 = 1 both fail: drop the remainder
    ],
)
def test_eval_batch_plan_never_leaves_a_replica_empty(n, replicas, max_b, expected) -> None:
    b, drop = eval_batch_plan(n, replicas, max_b)
    assert (b, drop) == expected
    global_batch = b * replicas
    assert b <= max_b and n >= global_batch  # the first batch is full and splits evenly
    rest = n % global_batch
    assert drop or rest == 0 or rest >= replicas  # no replica gets an empty last batch
