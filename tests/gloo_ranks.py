"""Gloo ranks for the multi-process tests: spawned, torn down the way ``ghm_mmdet``'s tools do, and bounded in
time, so that a rank that hangs fails its test instead of stalling the suite.

Why the tear-down matters: on torch older than 2.8 ``ProcessGroupGloo``'s destructor runs with the GIL held and
joins gloo's worker threads (pytorch/pytorch#154976 released the GIL there). A worker thread still dropping
the last reference to a collective's tensor needs the GIL to free that tensor's Python object, so
``destroy_process_group()`` right after a collective can deadlock. It did, at torch 2.0.1, in a rank of
``test_with_sync_stats_every_rank_reports_the_whole_batch`` (py-spy: the main thread in
``~ProcessGroupGloo`` -> ``std::thread::join``, the gloo thread in ``~AsyncWork`` -> ``gil_scoped_acquire``).
:func:`ghm_mmdet.apis.dist.cpu_process_group` collects garbage and meets the other ranks at a barrier first;
while the barrier waits the GIL is free, and the worker threads finish what they hold. :func:`gloo_group`
does the same.
"""
import contextlib
import datetime
import gc
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
import torch.distributed as torch_dist
import torch.multiprocessing as mp

#: How long the ranks of one test may take together, start-up (imports) included.
RANKS_TIMEOUT_S = 300


def init_file_group(rank: int, world_size: int, out_dir: str) -> None:
    """The default gloo group, met through a file in ``out_dir`` (no port that another test could take)."""
    torch_dist.init_process_group('gloo', init_method=f'file://{Path(out_dir) / "rendezvous"}', rank=rank,
                                  world_size=world_size, timeout=datetime.timedelta(seconds=120))


@contextlib.contextmanager
def gloo_group(rank: int, world_size: int, out_dir: str) -> Iterator[None]:
    """:func:`init_file_group` for the block; on the way out, gc, a barrier, then destroy."""
    init_file_group(rank, world_size, out_dir)
    yield
    gc.collect()
    torch_dist.barrier()
    torch_dist.destroy_process_group()


def run_ranks(fn: Callable[..., None], args: Sequence, nprocs: int = 2,
              timeout: float = RANKS_TIMEOUT_S) -> None:
    """``fn(rank, *args)`` in ``nprocs`` spawned processes; a rank's exception is raised here, and ranks still
    running after ``timeout`` seconds are killed and fail the test."""
    context = mp.start_processes(fn, args=tuple(args), nprocs=nprocs, start_method='spawn', join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() < deadline:
            continue
        alive = [rank for rank, process in enumerate(context.processes) if process.is_alive()]
        for process in context.processes:
            process.kill()
        pytest.fail(f'{fn.__name__}: rank(s) {alive} of {nprocs} still running after {timeout} s; killed')
