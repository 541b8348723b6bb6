"""benchmarks/timing.py: legs take turns, the order flips every round, untimed rounds are dropped, and
the paired ratios are those of the same round (hand-derived)."""
import pytest

from benchmarks.timing import interleave, machine_description


def scripted(name, times, order):
    """A leg that logs its turn and returns the next of ``times``."""
    values = iter(times)

    def leg():
        order.append(name)
        return next(values)
    return leg


def test_legs_take_turns_in_reversed_order_every_other_round():
    order = []
    legs = {name: scripted(name, [1.0] * 3, order) for name in 'abc'}
    interleave(legs, rounds=2, untimed_rounds=1)
    assert order == list('abc' 'cba' 'abc')


def test_untimed_rounds_are_dropped_and_paired_ratios_use_the_same_round():
    order = []
    legs = {'a': scripted('a', [9.0, 1.0, 2.0, 4.0], order), 'b': scripted('b', [9.0, 2.0, 2.0, 2.0], order)}
    result = interleave(legs, rounds=3, untimed_rounds=1)
    assert result.samples == {'a': [1.0, 2.0, 4.0], 'b': [2.0, 2.0, 2.0]}
    assert result.paired_ratios('a', 'b') == [0.5, 1.0, 2.0]
    assert result.median_ratio('a', 'b') == 1.0
    assert result.median('a') == 2.0


def test_a_leg_of_several_steps_is_summed_per_round():
    order = []
    legs = {'steps': scripted('steps', [[0.1, 0.2], [0.3, 0.3]], order), 'one': scripted('one', [0.5, 0.2], order)}
    result = interleave(legs, rounds=2)
    assert result.samples['steps'] == [0.1, 0.2, 0.3, 0.3]
    assert result.round_totals[0]['steps'] == pytest.approx(0.3)
    assert result.paired_ratios('steps', 'one') == pytest.approx([0.6, 3.0])


@pytest.mark.parametrize('rounds, untimed', [(0, 0), (1, -1)])
def test_bad_round_counts_are_refused(rounds, untimed):
    with pytest.raises(ValueError, match='rounds must be >= 1 and untimed_rounds >= 0'):
        interleave({'a': lambda: 1.0}, rounds=rounds, untimed_rounds=untimed)


def test_machine_description_names_cores_torch_and_python():
    import platform

    import torch
    text = machine_description()
    assert 'CPU cores' in text and f'torch {torch.__version__}' in text
    assert f'Python {platform.python_version()}' in text
