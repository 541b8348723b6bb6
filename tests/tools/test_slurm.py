"""tools/slurm_train.sh against a real single-node Slurm on this machine: two tasks on CPU.

It installs and starts Slurm (as root), so it runs only under CI or when a developer opts in."""
import pytest

from tool_runs import (
    DEMO_CONFIG,
    FAST_OPTIONS,
    SLURM_OPT_IN,
    TOOLS,
    acc_sums,
    failure_report,
    free_port,
    run_log,
    slurm_opt_in,
    tool_env,
)


@pytest.mark.parametrize('environ, allowed', [
    ({}, False),
    ({'CI': 'false'}, False),
    ({SLURM_OPT_IN: '0'}, False),
    ({SLURM_OPT_IN: 'yes'}, False),
    ({'CI': 'true'}, True),
    ({'CI': 'TRUE', SLURM_OPT_IN: '0'}, True),
    ({'CI': '1'}, True),
    ({SLURM_OPT_IN: '1'}, True),
])
def test_slurm_runs_only_under_ci_or_when_asked(environ, allowed):
    assert slurm_opt_in(environ)[0] is allowed


def test_slurm_skip_reason_names_the_opt_in_variable():
    allowed, reason = slurm_opt_in({})
    assert not allowed
    assert 'GHM_MMDET_TEST_SLURM=1' in reason


@pytest.mark.slow
@pytest.mark.timeout(1800)  # start_slurm.sh may install Slurm first (its own limit: 900 s)
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
