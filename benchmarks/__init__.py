"""The benchmarks and comparisons: kept beside the package, not installed with it, and importable from a
checkout (``from benchmarks import compare_losses``) for their tests.

Each script is its own module, and ``python benchmarks/NAME.py`` runs its ``main``: :mod:`.bench_losses`,
:mod:`.bench_stats_hook`, :mod:`.bench_overhead`, :mod:`.compare_losses`, :mod:`.evidence` (which
reuses the comparison's schedule scaling, log parsing and Welch test) and :mod:`.rtmdet_scale` (what RTMDetHead
divides GHM-C's loss by). :mod:`.timing` is the timing
helper they share (interleaved legs, medians, paired ratios, the machine).
"""
