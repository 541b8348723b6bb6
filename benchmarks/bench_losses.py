"""GHM-C / GHM-R at RetinaNet scale: time and peak memory against mmdet's losses (ghm_mmdet.benchmarks.losses).

    python benchmarks/bench_losses.py                 # full scale, CPU (and CUDA if present)
    python benchmarks/bench_losses.py --anchors 20000 # quick look
"""
from ghm_mmdet.benchmarks.losses import main

if __name__ == '__main__':
    main()
