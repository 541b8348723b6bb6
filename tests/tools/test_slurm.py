"""tools/slurm_train.sh against a real single-node Slurm on this machine: two tasks on CPU."""
import pytest
from tool_runs import (DEMO_CONFIG, FAST_OPTIONS, TOOLS, acc_sums, failure_report, free_port, run_log,
                       tool_env)

pytestmark = pytest.mark.slow


def test_slurm_train_sh_runs_two_cpu_tasks_to_the_end(tools, slurm_partition, tmp_path):
    work_dir = tmp_path / 'work'
    env = tool_env(GRES='none', GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1', PORT=str(free_port()))
    run = tools.run(['bash', TOOLS / 'slurm_train.sh', slurm_partition, 'ghm_test', DEMO_CONFIG, work_dir,
                     '--cfg-options', *FAST_OPTIONS, 'train_cfg.max_iters=4',
                     'env_cfg.dist_cfg.backend=nccl'],
                    env=env)
    assert run.returncode == 0, failure_report(run)
    assert '--gres' not in run.stderr  # the script's `set -x` trace of the srun command line
    assert '--ntasks=2' in run.stderr
    log = run_log(work_dir)
    assert 'Distributed launcher: slurm' in log
    assert 'GPU number: 2' in log
    assert "dist_cfg=dict(backend='gloo')" in log
    assert 'Iter(train) [4/4]' in log
    assert set(acc_sums(work_dir / 'iter_4.pth'))
