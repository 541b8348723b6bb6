"""The seed's API: get_ghm_weight() of peteryuX/tensorflow-GHM-loss, reproduced exactly."""
import pytest
import torch

from ghm_mmdet.core import GHMState, warm_start_ghm_weights

PREDICT = torch.tensor([1.0, 0.0, 0.5, 0.0])
TARGET = torch.tensor([1.0, 0.0, 0.0, 1.0])
VALID = torch.ones(4)


def test_seed_toy_demo():
    weights, state = warm_start_ghm_weights(PREDICT, TARGET, VALID, bins=10, momentum=0.75)
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([0.5, 0.5, 0.72727275, 0.72727275], abs=1e-6)
    for _ in range(100):
        weights, state = warm_start_ghm_weights(PREDICT, TARGET, VALID, state, bins=10,
                                                momentum=0.75)
    assert weights.tolist() == pytest.approx([0.2, 0.2, 0.4, 0.4], abs=1e-6)


def test_first_call_hand_derivation():
    # g = [0, 0, 0.5, 1] -> regions 0, 0, 5, 9; start = 4 / 10 = 0.4; region 0: 0.75 * 0.4 + 0.25 * 2
    # = 0.8 -> weight 4 / (0.8 * 10) = 0.5; regions 5, 9: 0.3 + 0.25 = 0.55 -> 4 / 5.5; others
    # 0.3, stored floored at 0.4.
    _, state = warm_start_ghm_weights(PREDICT, TARGET, VALID)
    expected = [0.8, 0.4, 0.4, 0.4, 0.4, 0.55, 0.4, 0.4, 0.4, 0.55]
    assert state.acc_sum.tolist() == pytest.approx(expected)
    assert state.floor.item() == pytest.approx(0.4)


def test_inputs_and_state_are_not_modified():
    state = GHMState.zeros(10, warm_start=True)
    _, new_state = warm_start_ghm_weights(PREDICT, TARGET, VALID, state)
    assert state.acc_sum.tolist() == [0.0] * 10 and state.floor.item() == 0.0
    assert new_state.floor.item() > 0


def test_ignored_entries_get_zero_weight_and_all_ignored_changes_nothing():
    weights, state = warm_start_ghm_weights(PREDICT, TARGET, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    assert weights[2].item() == 0.0 and (weights[[0, 1, 3]] > 0).all()
    weights, same = warm_start_ghm_weights(PREDICT, TARGET, torch.zeros(4), state)
    assert weights.tolist() == [0.0] * 4
    assert torch.equal(same.acc_sum, state.acc_sum) and torch.equal(same.floor, state.floor)


@pytest.mark.parametrize('kwargs, error, words', [
    (dict(bins=0), ValueError, 'bins'),
    (dict(bins=2.0), TypeError, 'bins'),
    (dict(momentum=1.0), ValueError, 'momentum'),
    (dict(state=GHMState.zeros(5, warm_start=True)), ValueError, 'state.acc_sum must have shape'),
])
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        warm_start_ghm_weights(PREDICT, TARGET, VALID, **kwargs)


def test_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r'valid_mask must have the shape of probs \(4,\)'):
        warm_start_ghm_weights(PREDICT, TARGET, torch.ones(1))


def test_without_momentum_the_weights_are_n_over_count_times_bins():
    # 800 entries in regions 0, 3 and 9 of 10 (600, 150, 50): weight = 800 / (count * 10).
    probs = torch.cat([torch.full((600,), 0.05), torch.full((150,), 0.35), torch.full((50,), 0.95)])
    weights, state = warm_start_ghm_weights(probs, torch.zeros(800), torch.ones(800), momentum=0.0)
    expected = torch.cat([torch.full((600,), 800 / 6000), torch.full((150,), 800 / 1500),
                          torch.full((50,), 800 / 500)])
    assert torch.allclose(weights, expected, rtol=1e-6)
    assert state.floor.item() == 80.0
