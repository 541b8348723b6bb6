"""GHMStatsHook's overhead on the demo's training (ghm_mmdet.benchmarks.stats_hook).

    python benchmarks/bench_stats_hook.py --rounds 4
    python benchmarks/bench_stats_hook.py --iters 8 --warmup 2 --rounds 1 --interval 2   # smoke check
"""
from ghm_mmdet.benchmarks.stats_hook import main

if __name__ == '__main__':
    main()
