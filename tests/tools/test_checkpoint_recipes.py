"""Each distinct set of schedules and hooks among the shipped configs, plus one with an EMA hook: a real Runner
writes a checkpoint through tools/train.py, which tools/test.py and ``--resume`` then read (allowlisted).

One run per distinct set, not per config: the set's schedules, loop and hooks are the representative config's,
on the demo's small model and a tiny generated set.
"""
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from mmengine.config import Config

from tool_runs import DEMO_CONFIG, FAST_OPTIONS, PYTHON, REPO, TOOLS, last_lines, run_log

pytestmark = [pytest.mark.slow, pytest.mark.compat]

TINY_SET = "dict(num_train=8, num_val=4, image_size=160, seed=0)"
EMA_HOOK = dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49)


def plain(value):
    """A config value as plain dicts and lists, to write into a config file."""
    if hasattr(value, 'items'):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def recipe(cfg: Config) -> Tuple:
    """What decides a checkpoint's contents beyond the model: loop, schedulers, hooks, log processor."""
    return (cfg.train_cfg.type, tuple(s['type'] for s in cfg.param_scheduler),
            tuple(sorted(h['type'] for h in cfg.get('custom_hooks', []))),
            tuple(sorted(h['type'] for h in cfg.default_hooks.values())), cfg.log_processor.get('by_epoch', True))


def shipped_recipes() -> Dict[str, Config]:
    """One representative config (the first by name) per distinct recipe of ``configs/*.py``, and the first
    epoch-based one again with an EMA hook."""
    representatives = {}
    for path in sorted((REPO / 'configs').glob('*.py')):
        cfg = Config.fromfile(str(path))
        representatives.setdefault(recipe(cfg), (path.stem, cfg))
    chosen = {name: cfg for name, cfg in representatives.values()}
    name, cfg = next((n, c) for n, c in representatives.values() if c.train_cfg.type == 'EpochBasedTrainLoop')
    with_ema = Config(plain(cfg.to_dict()))
    with_ema.custom_hooks = [*with_ema.get('custom_hooks', []), EMA_HOOK]
    chosen[f'{name}+ema'] = with_ema
    return chosen


RECIPES = shipped_recipes()


def test_the_recipes_include_the_published_1x_one_and_the_demos():
    recipes = {(cfg.train_cfg.type, tuple(s['type'] for s in cfg.param_scheduler)) for cfg in RECIPES.values()}
    assert ('EpochBasedTrainLoop', ('LinearLR', 'MultiStepLR')) in recipes  # the published 1x recipe
    assert ('IterBasedTrainLoop', ('LinearLR', 'CosineAnnealingLR')) in recipes  # the demo's


def write_config(path: Path, cfg: Config) -> Path:
    epochs = cfg.train_cfg.type == 'EpochBasedTrainLoop'
    train_cfg = dict(plain(cfg.train_cfg), **(dict(max_epochs=1) if epochs else dict(max_iters=4)))
    lines = [
        f"_base_ = '{DEMO_CONFIG}'",
        "data_root = 'data/ghm_tiny/'",
        f'generator_cfg = {TINY_SET}',
        f'train_cfg = dict(_delete_=True, **{train_cfg!r})',
        f'param_scheduler = {plain(cfg.param_scheduler)!r}',
        f"custom_hooks = {plain(cfg.get('custom_hooks', []))!r}",
        f'default_hooks = dict(checkpoint=dict(_delete_=True, **{plain(cfg.default_hooks.checkpoint)!r}))',
        f'log_processor = dict(_delete_=True, **{plain(cfg.log_processor)!r})',
        'optim_wrapper = dict(optimizer=dict(lr=0.001))',
    ]
    for split in ('train', 'val', 'test'):
        lines.append(f'{split}_dataloader = dict(dataset=dict(data_root=data_root, generator_cfg=generator_cfg))')
    lines += ["val_evaluator = dict(ann_file=data_root + 'annotations/val.json')", 'test_evaluator = val_evaluator']
    path.write_text('\n'.join(lines) + '\n')
    return path


def longer(cfg: Config) -> List[str]:
    return ['train_cfg.max_epochs=2' if cfg.train_cfg.type == 'EpochBasedTrainLoop' else 'train_cfg.max_iters=8']


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_checkpoint_of_the_recipe_is_read_by_test_py_and_resume(name, tools, tmp_path):
    cfg = RECIPES[name]
    config = write_config(tmp_path / f'{name}.py', cfg)
    work_dir = tmp_path / 'work'
    options = [*FAST_OPTIONS, 'default_hooks.checkpoint.interval=4'] if cfg.train_cfg.type == 'IterBasedTrainLoop' \
        else FAST_OPTIONS
    train = tools.run([PYTHON, TOOLS / 'train.py', config, '--work-dir', work_dir, '--cfg-options', *options])
    assert train.returncode == 0, last_lines(train.output)
    checkpoint = Path((work_dir / 'last_checkpoint').read_text().strip())

    test = tools.run([PYTHON, TOOLS / 'test.py', config, checkpoint, '--work-dir', tmp_path / 'test',
                      '--cfg-options', *FAST_OPTIONS, 'model.test_cfg.score_thr=0.0',
                      'model.test_cfg.max_per_img=20'])
    assert test.returncode == 0, last_lines(test.output)
    assert 'coco/bbox_mAP:' in run_log(tmp_path / 'test')

    resume = tools.run([PYTHON, TOOLS / 'train.py', config, '--work-dir', work_dir, '--resume',
                        '--cfg-options', *options, *longer(cfg)])
    assert resume.returncode == 0, last_lines(resume.output)
    assert f'Auto resumed from the latest checkpoint {checkpoint}' in run_log(work_dir)
    assert Path((work_dir / 'last_checkpoint').read_text().strip()) != checkpoint  # it trained on
