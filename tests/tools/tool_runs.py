"""Helpers for the end-to-end tests of tools/: running the tools as subprocesses on the demo config.

Every run uses ``configs/retinanet_ghm_demo.py`` with options that keep it to seconds on two CPU cores:
batch size 2, no dataloader workers, no validation, a log line per iteration with an unsmoothed loss, and a
fixed seed with deterministic algorithms. Runs share one working directory, so the demo data set (written
under ``data/ghm_demo`` relative to it on first use) is generated once per session.
"""
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / 'tools'
DEMO_CONFIG = REPO / 'configs' / 'retinanet_ghm_demo.py'
PYTHON = sys.executable
TOOL_TIMEOUT_S = 300

#: Iterations per leg of the resume tests: a run of N, resumed for N more, is compared with one of 2N.
N = 4
SEED = 1234

FAST_OPTIONS = [
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'train_cfg.val_begin=1000000',  # IterBasedTrainLoop validates at max_iters otherwise
    'default_hooks.logger.interval=1',
    'log_processor.window_size=1',  # the logged loss is that iteration's, not a moving mean
    'default_hooks.checkpoint.max_keep_ckpts=-1',
    f'randomness.seed={SEED}',
    'randomness.deterministic=True',
]


#: Set to 1 to let a developer's pytest (as root) install and start Slurm for the Slurm launcher test.
SLURM_OPT_IN = 'GHM_MMDET_TEST_SLURM'


def in_ci(environ: Mapping[str, str]) -> bool:
    return environ.get('CI', '').lower() in ('1', 'true', 'yes')


def slurm_opt_in(environ: Mapping[str, str]) -> Tuple[bool, str]:
    """Whether this test session may install and start Slurm on this machine, and why (or why not).

    Installing packages and starting daemons as root is not something a developer's ``pytest`` should do
    unasked: only CI (``CI=true``) or ``GHM_MMDET_TEST_SLURM=1`` allow it.
    """
    if in_ci(environ):
        return True, f'CI={environ["CI"]}'
    if environ.get(SLURM_OPT_IN) == '1':
        return True, f'{SLURM_OPT_IN}=1'
    return False, (f'the Slurm test installs and starts Slurm on this machine; set {SLURM_OPT_IN}=1 to run it '
                   '(CI=true runs it)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tool_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop('GHM_MMDET_TRACEBACK', None)
    env['PYTHON'] = PYTHON
    # One OpenMP thread per process: on a small, shared machine more threads spin against each other.
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHONPATH'] = str(REPO) + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env.update(extra)
    return env


@dataclass
class ToolRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Tools:
    """Runs ``tools/*`` in ``cwd`` and reads what they leave in a work dir."""

    def __init__(self, cwd: Path):
        self.cwd = cwd

    def run(self, command: Sequence[str], env: Optional[Dict[str, str]] = None,
            timeout: float = TOOL_TIMEOUT_S) -> ToolRun:
        proc = subprocess.run([str(c) for c in command], cwd=self.cwd, env=env or tool_env(),
                              capture_output=True, text=True, timeout=timeout)
        return ToolRun(proc.returncode, proc.stdout, proc.stderr)

    def train(self, work_dir: Path, *options: str, args: Sequence[str] = (), **kwargs) -> ToolRun:
        return self.run([PYTHON, TOOLS / 'train.py', DEMO_CONFIG, '--work-dir', work_dir, *args,
                         '--cfg-options', *FAST_OPTIONS, *options], **kwargs)

    def test(self, checkpoint: Path, *options: str, args: Sequence[str] = (), **kwargs) -> ToolRun:
        return self.run([PYTHON, TOOLS / 'test.py', DEMO_CONFIG, checkpoint, *args,
                         '--cfg-options', *FAST_OPTIONS, *options], **kwargs)

    def popen_train(self, work_dir: Path, *options: str, log_file) -> subprocess.Popen:
        return subprocess.Popen(
            [PYTHON, str(TOOLS / 'train.py'), str(DEMO_CONFIG), '--work-dir', str(work_dir),
             '--cfg-options', *FAST_OPTIONS, *options],
            cwd=self.cwd, env=tool_env(), stdout=log_file, stderr=subprocess.STDOUT)


def train_scalars(work_dir: Path) -> Dict[int, dict]:
    """Logged training scalars by step, over every run (timestamped sub-directory) in ``work_dir``."""
    by_step = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if index == len(lines) - 1:
                    continue  # a run killed while writing its last record
                raise
            if 'loss' in record:
                by_step[record['step']] = record
    return by_step


def acc_sums(checkpoint: Path) -> Dict[str, Any]:
    """The GHM moving-average buffers in a checkpoint's state_dict."""
    from ghm_mmdet.apis import load_checkpoint_safely
    state_dict = load_checkpoint_safely(str(checkpoint), map_location='cpu')['state_dict']
    sums = {key: value for key, value in state_dict.items()
            if key.endswith(('loss_cls.acc_sum', 'loss_bbox.acc_sum'))}
    assert len(sums) == 2, f'expected the GHM-C and GHM-R acc_sum buffers, found {sorted(sums)}'
    return sums


def run_log(work_dir: Path) -> str:
    """The text of every ``<timestamp>.log`` mmengine wrote in ``work_dir``."""
    return '\n'.join(p.read_text() for p in sorted(work_dir.glob('*/*.log')))


def last_lines(text: str, count: int = 30) -> str:
    return '\n'.join(text.splitlines()[-count:])


def failure_report(run: ToolRun, count: int = 40) -> str:
    """For a multi-process run: every rank's error lines (torchrun's summary hides them), then the tail."""
    marks = ('Error', 'error:', 'terminate called', 'what():', 'Traceback', 'Abort', 'srun:')
    errors = [line for line in run.output.splitlines() if any(mark in line for mark in marks)]
    return '\n'.join(errors[:60]) + '\n----- last lines -----\n' + last_lines(run.output, count)


@dataclass
class ReferenceRun:
    """2N uninterrupted iterations with checkpoints every N: what the resume tests must reproduce."""
    work_dir: Path
    scalars: Dict[int, dict]

    def checkpoint(self, iteration: int) -> Path:
        return self.work_dir / f'iter_{iteration}.pth'
