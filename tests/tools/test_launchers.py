"""The launcher scripts' command lines, checked against stand-ins for srun and python (no cluster needed)."""
import os
import stat
import subprocess

import pytest

from tool_runs import TOOLS

STUB = '#!/usr/bin/env bash\nprintf "%s\\n" "$0" "$@" > "$STUB_LOG"\n' \
       'env | grep -E "^(MASTER_PORT|OMP_NUM_THREADS|PYTHONPATH)=" | sort >> "$STUB_LOG"\n'


@pytest.fixture
def stubs(tmp_path):
    """A ``srun`` on PATH and a ``PYTHON`` that record their arguments and environment instead of running."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name in ('srun', 'python'):
        path = bin_dir / name
        path.write_text(STUB)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / 'stub.log'

    def run(script, *args, **env):
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ('GRES', 'GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'PORT',
                                 'MASTER_PORT', 'MASTER_ADDR', 'NNODES', 'NODE_RANK', 'OMP_NUM_THREADS')}
        full_env.update(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', STUB_LOG=str(log),
                        PYTHON=str(bin_dir / 'python'), **env)
        proc = subprocess.run(['bash', str(TOOLS / script), *args], env=full_env, capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return log.read_text().splitlines()

    return run


def test_slurm_train_defaults_match_mmdet(stubs):
    argv = stubs('slurm_train.sh', 'gpu-part', 'job', 'cfg.py', 'work', '--amp')
    assert argv[0].endswith('/srun')
    assert argv[1:9] == ['-p', 'gpu-part', '--job-name=job', '--gres=gpu:8', '--ntasks=8',
                         '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1']
    assert argv[9].endswith('/bin/python') and argv[10] == '-u'  # $PYTHON, unbuffered as mmdet
    tail = argv[argv.index('-u') + 1:]
    assert tail[:5] == [str(TOOLS / 'train.py'), 'cfg.py', '--work-dir=work', '--launcher=slurm', '--amp']
    assert 'MASTER_PORT=29500' in argv and 'OMP_NUM_THREADS=5' in argv


def test_slurm_train_without_gpus_requests_no_gres(stubs):
    argv = stubs('slurm_train.sh', 'cpu-part', 'job', 'cfg.py', 'work', GRES='none', GPUS='4',
                 GPUS_PER_NODE='2', CPUS_PER_TASK='1', PORT='29999', SRUN_ARGS='--time=10 --mem=4G')
    assert not [a for a in argv if a.startswith('--gres')]
    assert {'--ntasks=4', '--ntasks-per-node=2', '--cpus-per-task=1', '--time=10', '--mem=4G'} <= set(argv)
    assert 'MASTER_PORT=29999' in argv and 'OMP_NUM_THREADS=1' in argv


def test_slurm_train_custom_gres(stubs):
    argv = stubs('slurm_train.sh', 'p', 'job', 'cfg.py', 'work', GRES='gpu:a100:4', GPUS_PER_NODE='4')
    assert '--gres=gpu:a100:4' in argv


def test_slurm_test_passes_checkpoint_and_launcher(stubs):
    argv = stubs('slurm_test.sh', 'p', 'job', 'cfg.py', 'ckpt.pth', '--out', 'r.pkl', GRES='none')
    tail = argv[argv.index('-u') + 1:]
    assert tail[:6] == [str(TOOLS / 'test.py'), 'cfg.py', 'ckpt.pth', '--launcher=slurm', '--out', 'r.pkl']
    assert not [a for a in argv if a.startswith('--gres')]


def test_dist_train_runs_torchrun_with_mmdet_variables(stubs):
    argv = stubs('dist_train.sh', 'cfg.py', '4', '--amp', NNODES='2', NODE_RANK='1',
                 MASTER_ADDR='10.0.0.1', PORT='29123')
    assert argv[1:3] == ['-m', 'torch.distributed.run']
    assert argv[3:8] == ['--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1', '--nproc_per_node=4',
                         '--master_port=29123']
    assert argv[8:13] == [str(TOOLS / 'train.py'), 'cfg.py', '--launcher', 'pytorch', '--amp']


def test_dist_test_runs_torchrun_on_test_py(stubs):
    argv = stubs('dist_test.sh', 'cfg.py', 'ckpt.pth', '2', '--out', 'r.pkl')
    assert argv[3:8] == ['--nnodes=1', '--node_rank=0', '--master_addr=127.0.0.1', '--nproc_per_node=2',
                         '--master_port=29500']
    assert argv[8:14] == [str(TOOLS / 'test.py'), 'cfg.py', 'ckpt.pth', '--launcher', 'pytorch', '--out']


@pytest.mark.parametrize('script, count', [('dist_train.sh', 1), ('dist_test.sh', 2),
                                           ('slurm_train.sh', 3), ('slurm_test.sh', 3)])
def test_too_few_arguments_print_usage(script, count):
    proc = subprocess.run(['bash', str(TOOLS / script), *['x'] * count], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith('usage:')
