"""A missing checkpoint or dataset, or a config typo, stops a tool process with one sentence naming it.

The mistakes caught before any model is built (missing config, resume or load_from checkpoint, a config
that does not parse) are checked in-process in tests/apis/test_cli_args.py.
"""
import pytest
from tool_runs import DEMO_CONFIG, PYTHON, REPO, TOOLS, last_lines

pytestmark = pytest.mark.slow

COCO_CONFIG = REPO / 'configs' / 'retinanet_ghm_r50_fpn_1x_coco.py'


def assert_one_sentence(run, expected):
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1, last_lines(run.output)
    assert 'Traceback' not in run.stderr, last_lines(run.stderr)
    assert lines == [expected], last_lines(run.stderr)


def test_missing_checkpoint_for_test_py(tools, tmp_path):
    missing = tmp_path / 'nowhere' / 'epoch_12.pth'
    run = tools.test(missing)
    assert_one_sentence(run, f'test.py: error: checkpoint file {missing} does not exist')


def test_missing_dataset_of_coco_config(tools, tmp_path):
    # The COCO config run where there is no data/coco: stops at the annotation file, before any download.
    run = tools.run([PYTHON, TOOLS / 'train.py', COCO_CONFIG, '--work-dir', tmp_path / 'work'])
    assert_one_sentence(
        run, 'train.py: error: file data/coco/annotations/instances_train2017.json does not exist (check the '
        f'dataset paths data_root, ann_file and data_prefix in config {COCO_CONFIG})')


def test_missing_annotation_file_of_demo_config(tools, tmp_path):
    run = tools.train(tmp_path / 'work', 'train_dataloader.dataset.ann_file=annotations/trian.json')
    assert_one_sentence(
        run, 'train.py: error: file data/ghm_demo/annotations/trian.json does not exist (check the dataset '
        f'paths data_root, ann_file and data_prefix in config {DEMO_CONFIG})')


def test_typo_in_registered_type(tools, tmp_path):
    run = tools.train(tmp_path / 'work', 'model.bbox_head.type=GHMRetinaHaed')
    assert_one_sentence(
        run, f"train.py: error: type='GHMRetinaHaed' in config {DEMO_CONFIG} is not a registered "
        'mmdet::model type (a typo, or a missing custom_imports?)')


def test_typo_in_argument_name(tools, tmp_path):
    run = tools.train(tmp_path / 'work', 'train_cfg.max_iter=3')
    assert_one_sentence(
        run, "train.py: error: IterBasedTrainLoop does not take the argument 'max_iter' given in config "
        f'{DEMO_CONFIG} (a typo in that key?)')



def test_value_rejected_by_a_loss_argument_check(tools, tmp_path):
    run = tools.train(tmp_path / 'work', 'model.bbox_head.loss_cls.bins=0')
    assert_one_sentence(
        run, f'train.py: error: GHMC in config {DEMO_CONFIG}: bins must be an int >= 1, got 0')
