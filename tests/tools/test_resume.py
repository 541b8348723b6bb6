"""``--resume``: N iterations, then N more, equal 2N uninterrupted ones, even after a SIGKILL mid-run."""
import inspect
import signal
import time

import pytest
import torch
from mmengine.runner.loops import IterBasedTrainLoop

from tool_runs import N, acc_sums, last_lines, run_log, train_scalars

#: Whether this mmengine fast-forwards the data on resume (0.10 does; 0.7 starts the data over, so a resumed
#: run sees other batches than an uninterrupted one and only the restored state, not the numbers, can match).
RESUME_SKIPS_DATA = 'Advance dataloader' in inspect.getsource(IterBasedTrainLoop.run)

pytestmark = [pytest.mark.slow, pytest.mark.compat]

LOSS_KEYS = ('loss', 'loss_cls', 'loss_bbox')


def assert_same_as_reference(work_dir, reference_run, steps):
    resumed = acc_sums(work_dir / f'iter_{2 * N}.pth')
    reference = acc_sums(reference_run.checkpoint(2 * N))
    if not RESUME_SKIPS_DATA:
        for key, value in resumed.items():
            assert torch.isfinite(value).all() and value.abs().sum() > 0, key
            # The moving average went on from the checkpoint's: N more calls cannot bring it back.
            assert not torch.equal(value, acc_sums(reference_run.checkpoint(N))[key]), key
        return
    for key, value in reference.items():
        assert value.abs().sum() > 0, f'{key} is still zero: GHM statistics were never accumulated'
        torch.testing.assert_close(resumed[key], value, rtol=1e-6, atol=1e-6, msg=key)
    scalars = train_scalars(work_dir)
    for step in steps:
        for key in LOSS_KEYS:
            assert scalars[step][key] == pytest.approx(reference_run.scalars[step][key], rel=1e-5), \
                (step, key)


def test_resume_for_n_more_matches_2n_uninterrupted(tools, reference_run, tmp_path):
    work_dir = tmp_path / 'work'
    first = tools.train(work_dir, f'train_cfg.max_iters={N}', f'default_hooks.checkpoint.interval={N}')
    assert first.returncode == 0, last_lines(first.output)
    assert (work_dir / f'iter_{N}.pth').is_file()
    assert max(train_scalars(work_dir)) == N

    second = tools.train(work_dir, f'train_cfg.max_iters={2 * N}', f'default_hooks.checkpoint.interval={N}',
                         args=['--resume'])
    assert second.returncode == 0, last_lines(second.output)
    assert f'resumed epoch: 0, iter: {N}' in run_log(work_dir)
    assert_same_as_reference(work_dir, reference_run, steps=range(N + 1, 2 * N + 1))


def test_resume_from_explicit_checkpoint_into_new_work_dir(tools, reference_run, tmp_path):
    work_dir = tmp_path / 'work'
    run = tools.train(work_dir, f'train_cfg.max_iters={2 * N}', f'default_hooks.checkpoint.interval={N}',
                      args=['--resume', str(reference_run.checkpoint(N))])
    assert run.returncode == 0, last_lines(run.output)
    assert_same_as_reference(work_dir, reference_run, steps=[N + 1, 2 * N])


def _wait_for_checkpoint(work_dir, name, proc, timeout):
    marker = work_dir / 'last_checkpoint'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file() and marker.read_text().strip().endswith(name):
            return
        if proc.poll() is not None:
            raise AssertionError(f'training exited with {proc.returncode} before saving {name}')
        time.sleep(0.02)
    raise AssertionError(f'{name} was not saved within {timeout} s')


def test_sigkill_mid_run_then_resume_loses_nothing_the_checkpoint_held(tools, reference_run, tmp_path):
    work_dir = tmp_path / 'work'
    log_path = tmp_path / 'killed.log'
    # Same run as the reference except that it would go on far longer; killed right after saving iter N.
    with open(log_path, 'w') as log:
        proc = tools.popen_train(work_dir, 'train_cfg.max_iters=100000',
                                 f'default_hooks.checkpoint.interval={N}', log_file=log)
        try:
            _wait_for_checkpoint(work_dir, f'iter_{N}.pth', proc, timeout=240)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # Killed before it could save again: resuming has only iter_N to go on.
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith(f'iter_{N}.pth')

    resumed = tools.train(work_dir, f'train_cfg.max_iters={2 * N}', f'default_hooks.checkpoint.interval={N}',
                          args=['--resume'])
    assert resumed.returncode == 0, last_lines(resumed.output)
    assert f'Auto resumed from the latest checkpoint {work_dir / f"iter_{N}.pth"}' in run_log(work_dir)
    # Iteration N+1 needs the weights, optimizer momentum, GHM acc_sum, LR schedule, random state and data
    # position the checkpoint held; 2N needs them to have stayed right since.
    assert_same_as_reference(work_dir, reference_run, steps=range(N + 1, 2 * N + 1))

