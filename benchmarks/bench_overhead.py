"""GHM's training-step overhead over Focal + L1, every loss setting in one process
(ghm_mmdet.benchmarks.overhead).

    python benchmarks/bench_overhead.py            # every setting, 20 rounds x 4 batches
    python benchmarks/bench_overhead.py --quick    # smoke check on the small data set
"""
from ghm_mmdet.benchmarks.overhead import main

if __name__ == '__main__':
    main()
