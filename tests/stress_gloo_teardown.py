"""How often two gloo ranks hang in ``destroy_process_group()``: the rank of
``test_with_sync_stats_every_rank_reports_the_whole_batch`` as it is (``barrier``: :func:`gloo_ranks.gloo_group`,
gc, barrier, destroy), and the same rank with its group destroyed right after the collective (``direct``, the
test before the fix).

Not a test (pytest does not collect it); the numbers in docs/development.md come from it, at the oldest corner:

    .venv-oldest/bin/python tests/stress_gloo_teardown.py direct 10
    .venv-oldest/bin/python tests/stress_gloo_teardown.py barrier 30
"""
import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS), str(TESTS / 'engine')]
os.environ.setdefault('OMP_NUM_THREADS', '1')  # as under pytest-xdist (tests/conftest.py)

import test_ghm_stats_hook_training as hook_test  # noqa: E402
import torch  # noqa: E402
import torch.distributed as torch_dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from gloo_ranks import init_file_group  # noqa: E402

HANG_S = 60


@contextlib.contextmanager
def destroyed_at_once(rank, world_size, out_dir):
    init_file_group(rank, world_size, out_dir)
    yield
    torch_dist.destroy_process_group()


def direct(rank, out_dir):
    hook_test.gloo_group = destroyed_at_once
    hook_test._rank_snapshot(rank, out_dir)


def barrier(rank, out_dir):
    hook_test._rank_snapshot(rank, out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('teardown', choices=['direct', 'barrier'])
    parser.add_argument('runs', type=int)
    args = parser.parse_args()
    fn = dict(direct=direct, barrier=barrier)[args.teardown]
    hangs = 0
    for run in range(args.runs):
        out_dir = tempfile.mkdtemp()
        context = mp.start_processes(fn, args=(out_dir,), nprocs=2, start_method='spawn', join=False)
        start = time.monotonic()
        while not context.join(timeout=1):
            if time.monotonic() - start > HANG_S:
                hangs += 1
                for process in context.processes:
                    process.kill()
                break
        took = time.monotonic() - start
        shutil.rmtree(out_dir, ignore_errors=True)
        print(f'{args.teardown} run {run}: ' + (f'hung (> {HANG_S} s), killed' if took > HANG_S else f'{took:.1f} s'),
              flush=True)
    print(f'{args.teardown}: {hangs} of {args.runs} runs hung; torch {torch.__version__}')


if __name__ == '__main__':
    main()
