"""The one timing helper of the benchmarks: legs that take turns, their medians and paired ratios.

Timings on a shared or virtual machine drift by several percent within minutes. Every benchmark therefore
runs the variants it compares (its *legs*) in the same process, taking turns within each round and in the
reverse order every other round, so that a drift falls on all of them alike, and compares them by the
median over rounds of the ratio of two legs' times in the same round.
"""
import os
import platform
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, List, Mapping, Sequence, Union

Leg = Callable[[], Union[float, Sequence[float]]]


@dataclass
class Interleaved:
    """What :func:`interleave` measured.

    Attributes:
        samples: every timed sample (seconds) of each leg, in order.
        round_totals: per timed round, each leg's summed seconds.
    """
    samples: Dict[Hashable, List[float]] = field(default_factory=dict)
    round_totals: List[Dict[Hashable, float]] = field(default_factory=list)

    def median(self, leg: Hashable) -> float:
        return statistics.median(self.samples[leg])

    def paired_ratios(self, leg: Hashable, reference: Hashable) -> List[float]:
        """Per round, ``leg``'s time divided by ``reference``'s in the same round."""
        return [totals[leg] / totals[reference] for totals in self.round_totals]

    def median_ratio(self, leg: Hashable, reference: Hashable) -> float:
        return statistics.median(self.paired_ratios(leg, reference))


def interleave(legs: Mapping[Hashable, Leg], rounds: int, untimed_rounds: int = 0) -> Interleaved:
    """Call every leg once per round, in the order of ``legs``, reversed every other round.

    Args:
        legs: name -> a function that runs the leg once and returns its seconds (one number, or one per
            step when a leg is several steps).
        rounds: timed rounds, >= 1.
        untimed_rounds: rounds run first and not recorded (warm-up), >= 0.

    Returns:
        :class:`Interleaved`.
    """
    if rounds < 1 or untimed_rounds < 0:
        raise ValueError(f'rounds must be >= 1 and untimed_rounds >= 0, got {rounds} and {untimed_rounds}')
    names = list(legs)
    result = Interleaved({name: [] for name in names}, [])
    for index in range(untimed_rounds + rounds):
        totals = {}
        for name in (names if index % 2 == 0 else names[::-1]):
            seconds = legs[name]()
            seconds = [float(seconds)] if isinstance(seconds, (int, float)) else [float(s) for s in seconds]
            totals[name] = sum(seconds)
            if index >= untimed_rounds:
                result.samples[name] += seconds
        if index >= untimed_rounds:
            result.round_totals.append(totals)
    return result


def machine_description() -> str:
    """The CPU (model and cores), the GPU if any, torch and Python: what the timings depend on."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            models = [line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name')]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return (f'{os.cpu_count()} CPU cores ({cpu}), {device}, torch {torch.__version__}, '
            f'Python {platform.python_version()}')
