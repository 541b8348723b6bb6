"""tools/dist_train.sh and tools/dist_test.sh: two processes on CPU with gloo."""
import pytest
from tool_runs import (DEMO_CONFIG, FAST_OPTIONS, TOOLS, acc_sums, failure_report, free_port, run_log,
                       tool_env)

pytestmark = pytest.mark.slow


def test_dist_train_sh_runs_two_cpu_processes_to_the_end(tools, tmp_path):
    work_dir = tmp_path / 'work'
    # A config asking for NCCL, as mmdet's default_runtime does: without CUDA the run must use gloo.
    run = tools.run(['bash', TOOLS / 'dist_train.sh', DEMO_CONFIG, '2', '--work-dir', work_dir,
                     '--cfg-options', *FAST_OPTIONS, 'train_cfg.max_iters=4',
                     'env_cfg.dist_cfg.backend=nccl'],
                    env=tool_env(PORT=str(free_port())))
    assert run.returncode == 0, failure_report(run)
    log = run_log(work_dir)
    assert 'Distributed launcher: pytorch' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    assert "dist_cfg=dict(backend='gloo')" in log
    assert 'Iter(train) [4/4]' in log
    assert set(acc_sums(work_dir / 'iter_4.pth'))  # rank 0 saved a loadable checkpoint


def test_dist_test_sh_evaluates_with_two_cpu_processes(tools, reference_run, tmp_path):
    run = tools.run(['bash', TOOLS / 'dist_test.sh', DEMO_CONFIG, reference_run.checkpoint(8), '2',
                     '--work-dir', tmp_path / 'work', '--cfg-options', *FAST_OPTIONS,
                     'model.test_cfg.score_thr=0.0', 'model.test_cfg.max_per_img=20',
                     'test_dataloader.dataset.indices=8'],
                    env=tool_env(PORT=str(free_port())))
    assert run.returncode == 0, failure_report(run)
    log = run_log(tmp_path / 'work')
    assert 'GPU number: 2' in log
    assert 'coco/bbox_mAP:' in log
