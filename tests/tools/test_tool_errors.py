"""What a tool process prints when it stops: one line for our own checks, mmengine's message with its
traceback for everything else (the OpenMMLab convention; a refused checkpoint: tests/tools/test_safe_load.py)."""
import pytest

from tool_runs import last_lines

pytestmark = pytest.mark.slow


def test_value_rejected_by_a_loss_argument_check_is_one_line(tools, tmp_path):
    run = tools.train(tmp_path / 'work', 'model.bbox_head.loss_cls.bins=0')
    assert run.returncode == 1, last_lines(run.output)
    assert 'Traceback' not in run.stderr, last_lines(run.stderr)
    assert run.stderr.strip().splitlines()[-1] == \
        'train.py: error: GHMC in the config: bins must be an int >= 1, got 0'


def test_missing_checkpoint_keeps_mmengines_message_and_traceback(tools, tmp_path):
    missing = tmp_path / 'nowhere' / 'epoch_12.pth'
    run = tools.test(missing)
    assert run.returncode == 1, last_lines(run.output)
    assert 'Traceback (most recent call last)' in run.stderr
    assert run.stderr.strip().splitlines()[-1] == f'FileNotFoundError: {missing} can not be found.'


def test_a_typo_in_a_type_keeps_mmengines_message(tools, tmp_path):
    run = tools.train(tmp_path / 'work', 'model.bbox_head.type=GHMRetinaHaed')
    assert run.returncode == 1, last_lines(run.output)
    assert 'Traceback (most recent call last)' in run.stderr
    assert 'GHMRetinaHaed is not in the mmdet::model registry' in run.stderr, last_lines(run.stderr)

