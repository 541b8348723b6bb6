"""ghm_mmdet.apis.config: the run's config from the command line, as mmdet 3.3's tools build it."""
import os.path as osp

import pytest
import torch

from ghm_mmdet.apis.cli import build_test_parser, build_train_parser
from ghm_mmdet.apis import config as run_config
from ghm_mmdet.apis.config import configure_testing, configure_training, load_config
from ghm_mmdet.apis.errors import ToolError

BASE = """
model = dict(type='RetinaNet', bbox_head=dict(type='GHMRetinaHead', num_classes=8))
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01))
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(visualization=dict(type='DetVisualizationHook', draw=False))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackDetInputs')]
test_dataloader = dict(dataset=dict(type='CocoDataset', pipeline=test_pipeline))
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / 'tiny_config.py'
    path.write_text(BASE)
    return path


def train_cfg(config_file, *argv, text=None):
    if text is not None:
        config_file.write_text(text)
    args = build_train_parser().parse_args([str(config_file), *argv])
    return configure_training(load_config(args.config, args.cfg_options), args)


def test_cfg_options_override_the_file(config_file):
    cfg = train_cfg(config_file, '--cfg-options', 'model.bbox_head.num_classes=3')
    assert cfg.model.bbox_head.num_classes == 3


def test_work_dir_priority(config_file):
    assert train_cfg(config_file, '--work-dir', 'cli').work_dir == 'cli'
    assert train_cfg(config_file, text=BASE + "work_dir = 'file'\n").work_dir == 'file'
    assert train_cfg(config_file, '--work-dir', 'cli', text=BASE + "work_dir = 'file'\n").work_dir == 'cli'
    assert train_cfg(config_file, text=BASE).work_dir == osp.join('./work_dirs', 'tiny_config')


def test_amp_switches_optim_wrapper(config_file, monkeypatch):
    monkeypatch.setattr(run_config, 'get_device', lambda: 'cuda')
    cfg = train_cfg(config_file, '--amp')
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.loss_scale) == ('AmpOptimWrapper', 'dynamic')
    assert train_cfg(config_file).optim_wrapper.type == 'OptimWrapper'


def test_amp_without_accelerator_is_refused_up_front(config_file, monkeypatch):
    # mmengine's AmpOptimWrapper asserts deep inside Runner.train() instead.
    monkeypatch.setattr(run_config, 'get_device', lambda: 'cpu')
    with pytest.raises(ToolError, match='^--amp \\(AmpOptimWrapper\\) needs a GPU, NPU, MLU or MUSA device; '
                                        'this machine has only cpu$'):
        train_cfg(config_file, '--amp')


def test_auto_scale_lr(config_file):
    assert train_cfg(config_file, '--auto-scale-lr').auto_scale_lr.enable is True
    with pytest.raises(ToolError, match=r'--auto-scale-lr needs auto_scale_lr=dict\(enable=...'):
        train_cfg(config_file, '--auto-scale-lr', text=BASE.replace('auto_scale_lr', 'no_scaling'))


def test_resume_auto_and_explicit(config_file, tmp_path):
    cfg = train_cfg(config_file, '--resume', text=BASE + "load_from = None\n")
    assert (cfg.resume, cfg.load_from) == (True, None)
    checkpoint = tmp_path / 'iter_4.pth'
    torch.save({}, checkpoint)
    cfg = train_cfg(config_file, '--resume', str(checkpoint))
    assert (cfg.resume, cfg.load_from) == (True, str(checkpoint))
    assert train_cfg(config_file).get('resume', False) is False


def test_missing_resume_and_load_from_checkpoints_are_named(config_file, tmp_path):
    missing = tmp_path / 'gone.pth'
    with pytest.raises(ToolError, match=f'^resume checkpoint file {missing} does not exist$'):
        train_cfg(config_file, '--resume', str(missing))
    with pytest.raises(ToolError, match=f'^load_from checkpoint file {missing} does not exist$'):
        train_cfg(config_file, text=BASE + f"load_from = '{missing}'\n")


def test_remote_checkpoints_are_left_to_the_loader(config_file):
    url = 'https://download.openmmlab.com/mmdetection/v2.0/ghm/x.pth'
    assert train_cfg(config_file, text=BASE + f"load_from = '{url}'\n").load_from == url


def test_missing_config_file(tmp_path):
    with pytest.raises(ToolError, match=f'^config file {tmp_path / "nope.py"} does not exist$'):
        load_config(str(tmp_path / 'nope.py'))


@pytest.mark.parametrize('text, detail', [
    ('model = dict(\n', "'(' was never closed (line 1)"),
    ('x = undefined_name\n', "NameError: name 'undefined_name' is not defined"),
    ("_base_ = './missing_base.py'\n", 'FileNotFoundError'),
])
def test_config_that_does_not_load_is_one_sentence(config_file, text, detail):
    config_file.write_text(text)
    with pytest.raises(ToolError) as info:
        load_config(str(config_file))
    message = str(info.value)
    assert message.startswith(f'config file {config_file} could not be read: ')
    assert detail in message
    assert '\n' not in message


def test_cfg_options_that_cannot_merge(config_file):
    with pytest.raises(ToolError, match='^--cfg-options could not be merged into config'):
        load_config(str(config_file), {'optim_wrapper.optimizer.lr.x': 1})


def cfg_for_testing(config_file, checkpoint, *argv):
    args = build_test_parser().parse_args([str(config_file), str(checkpoint), *argv])
    return configure_testing(load_config(args.config), args)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / 'latest.pth'
    torch.save({}, path)
    return path


def test_testing_loads_the_checkpoint(config_file, checkpoint):
    cfg = cfg_for_testing(config_file, checkpoint, '--launcher', 'pytorch')
    assert (cfg.load_from, cfg.launcher) == (str(checkpoint), 'pytorch')


def test_testing_refuses_missing_checkpoint_and_non_pickle_out(config_file, checkpoint, tmp_path):
    with pytest.raises(ToolError, match=f'^checkpoint file {tmp_path / "x.pth"} does not exist$'):
        cfg_for_testing(config_file, tmp_path / 'x.pth')
    with pytest.raises(ToolError, match='^--out r.json must name a .pkl or .pickle file$'):
        cfg_for_testing(config_file, checkpoint, '--out', 'r.json')
    cfg_for_testing(config_file, checkpoint, '--out', 'r.pickle')


def test_show_dir_turns_on_drawing(config_file, checkpoint):
    hook = cfg_for_testing(config_file, checkpoint, '--show-dir', 'vis').default_hooks.visualization
    assert (hook.draw, hook.test_out_dir, hook.get('show', False)) == (True, 'vis', False)
    cfg = cfg_for_testing(config_file, checkpoint, '--show', '--wait-time', '0.1')
    hook = cfg.default_hooks.visualization
    assert (hook.draw, hook.show, hook.wait_time) == (True, True, 0.1)


def test_show_without_visualization_hook(config_file, checkpoint):
    config_file.write_text(BASE.replace('visualization', 'logger'))
    with pytest.raises(ToolError, match='--show/--show-dir need default_hooks.visualization'):
        cfg_for_testing(config_file, checkpoint, '--show')


def test_tta_wraps_model_and_flips(config_file, checkpoint):
    with pytest.warns(UserWarning, match='tta_model'):
        cfg = cfg_for_testing(config_file, checkpoint, '--tta')
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.module.bbox_head.type == 'GHMRetinaHead'
    flip = cfg.test_dataloader.dataset.pipeline[-1]
    assert flip['type'] == 'TestTimeAug'
    assert [t['prob'] for t in flip['transforms'][0]] == [1.0, 0.0]
