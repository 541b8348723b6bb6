"""How often two gloo ranks hang in ``destroy_process_group()`` after a ``sync_stats`` GHM-C call, torn down
right after the collective (``direct``) or as :func:`gloo_ranks.gloo_group` does it (gc, barrier, destroy).

Not a test (pytest does not collect it); the numbers in docs/development.md come from it, at the oldest corner:

    .venv-oldest/bin/python tests/stress_gloo_teardown.py direct 10
    .venv-oldest/bin/python tests/stress_gloo_teardown.py barrier 30
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault('OMP_NUM_THREADS', '1')  # as under pytest-xdist (tests/conftest.py)

import torch  # noqa: E402
import torch.distributed as torch_dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from gloo_ranks import gloo_group  # noqa: E402

HANG_S = 60


def _batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(400, 6, generator=gen) * 3
    labels = torch.randint(0, 7, (400,), generator=gen)
    weight = (torch.rand(400, generator=gen) > 0.1).float()
    return logits, labels, weight


def direct(rank, out_dir):
    """The test's rank before the fix: destroyed right after the collective."""
    from ghm_mmdet.engine import read_snapshot
    from ghm_mmdet.models.losses import GHMC

    torch_dist.init_process_group('gloo', init_method=f'file://{out_dir}/rendezvous', rank=rank, world_size=2,
                                  timeout=datetime.timedelta(seconds=120))
    logits, labels, weight = _batch()
    half = slice(rank * 200, (rank + 1) * 200)
    loss = GHMC(bins=30, sync_stats=True)
    loss(logits[half], labels[half], weight[half])
    snapshot = read_snapshot(loss)
    (Path(out_dir) / f'rank{rank}.json').write_text(json.dumps(
        dict(counts=snapshot.counts, num_valid=snapshot.num_valid, beta=snapshot.beta)))
    torch_dist.destroy_process_group()


def barrier(rank, out_dir):
    """The test's rank now (tests/engine/test_ghm_stats_hook_training.py): :func:`gloo_group`."""
    from ghm_mmdet.engine import read_snapshot
    from ghm_mmdet.models.losses import GHMC

    with gloo_group(rank, 2, out_dir):
        logits, labels, weight = _batch()
        half = slice(rank * 200, (rank + 1) * 200)
        loss = GHMC(bins=30, sync_stats=True)
        loss(logits[half], labels[half], weight[half])
        snapshot = read_snapshot(loss)
        (Path(out_dir) / f'rank{rank}.json').write_text(json.dumps(
            dict(counts=snapshot.counts, num_valid=snapshot.num_valid, beta=snapshot.beta)))


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
