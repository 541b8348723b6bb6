"""The logic of ``benchmarks/*.py``: each script parses its command line and calls ``main`` here.

:mod:`.timing` is the one timing helper (interleaved legs, medians, paired ratios, the machine);
:mod:`.losses`, :mod:`.stats_hook`, :mod:`.overhead` and :mod:`.comparison` are the four benchmarks.
Nothing here is imported by ``import ghm_mmdet``.
"""
