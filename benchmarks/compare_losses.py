"""The multi-seed loss comparison on the demo data (ghm_mmdet.benchmarks.comparison).

    python benchmarks/compare_losses.py                   # 6 settings x seeds 0 1 2, 1500 iterations each
    python benchmarks/compare_losses.py --resume-existing # continue an interrupted comparison
    python benchmarks/compare_losses.py --quick           # smoke check: 2 settings, 1 seed, 10 iterations
"""
from ghm_mmdet.benchmarks.comparison import main

if __name__ == '__main__':
    main()
