"""Session fixtures for the end-to-end tests of tools/ (helpers in ``tool_runs.py``)."""
import os
import subprocess
from pathlib import Path

import pytest

from tool_runs import DEMO_CONFIG, N, ReferenceRun, Tools, in_ci, last_lines, slurm_opt_in, train_scalars

SLURM_START = Path(__file__).parent / 'slurm' / 'start_slurm.sh'
SLURM_CANNOT_INSTALL = 3


@pytest.fixture(scope='session')
def tools(tmp_path_factory) -> Tools:
    if not DEMO_CONFIG.is_file():
        pytest.fail(f'{DEMO_CONFIG} is missing')
    return Tools(tmp_path_factory.mktemp('tools_cwd'))


@pytest.fixture(scope='session')
def reference_run(tools: Tools) -> ReferenceRun:
    work_dir = tools.cwd / 'reference'
    run = tools.train(work_dir, f'train_cfg.max_iters={2 * N}', f'default_hooks.checkpoint.interval={N}')
    assert run.returncode == 0, last_lines(run.output)
    scalars = train_scalars(work_dir)
    assert sorted(scalars) == list(range(1, 2 * N + 1)), sorted(scalars)
    return ReferenceRun(work_dir, scalars)


@pytest.fixture(scope='session')
def slurm_partition() -> str:
    """A single-node, CPU-only Slurm cluster on this machine, started by ``slurm/start_slurm.sh``.

    Only under CI (``CI=true``) or with ``GHM_MMDET_TEST_SLURM=1`` (:func:`tool_runs.slurm_opt_in`);
    otherwise skipped, naming that variable. Opted in, it is skipped only where Slurm cannot be installed
    (the script exits with 3), and never under CI, so that CI never passes without having run the Slurm test.
    """
    allowed, reason = slurm_opt_in(os.environ)
    if not allowed:
        pytest.skip(reason)
    proc = subprocess.run(['bash', str(SLURM_START)], capture_output=True, text=True, timeout=900)
    if proc.returncode == 0:
        return proc.stdout.split()[-1]
    message = f'start_slurm.sh exited with {proc.returncode} ({reason}):\n{last_lines(proc.stderr, 15)}'
    if proc.returncode == SLURM_CANNOT_INSTALL and not in_ci(os.environ):
        pytest.skip(f'Slurm cannot be installed on this machine ({message.splitlines()[-1]})')
    pytest.fail(message)
