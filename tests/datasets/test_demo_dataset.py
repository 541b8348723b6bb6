"""GHMDemoDataset: the demo set as an mmdet CocoDataset that generates its data on first use."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.registry import init_default_scope

from ghm_mmdet.datasets import CLASSES, PALETTE, SceneStyle, is_complete

ROOT = Path(__file__).resolve().parents[2]
GENERATOR_CFG = dict(num_train=3, num_val=2, image_size=96, seed=2)


def _build(data_root, split='train', **overrides):
    from mmdet.registry import DATASETS

    init_default_scope('mmdet')
    cfg = dict(type='GHMDemoDataset', data_root=str(data_root), generator_cfg=GENERATOR_CFG,
               ann_file=f'annotations/{split}.json', data_prefix=dict(img=f'{split}/'),
               filter_cfg=dict(filter_empty_gt=True, min_size=0), pipeline=[])
    cfg.update(overrides)
    return DATASETS.build(cfg)


@pytest.mark.compat
def test_importing_the_package_registers_the_dataset():
    # In a fresh interpreter, from the checkout: `import ghm_mmdet` leaves the dataset out
    # (tests/test_install.py), so the demo config's custom_imports depend on this import registering it.
    code = ('import ghm_mmdet.datasets\nfrom mmdet.registry import DATASETS\n'
            'print(getattr(DATASETS.module_dict.get("GHMDemoDataset"), "__module__", None))')
    run = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == 'ghm_mmdet.datasets.demo_dataset'


def test_generates_on_first_use_and_loads_as_coco(tmp_path):
    root = tmp_path / 'demo'
    dataset = _build(root)
    assert is_complete(root)
    assert len(dataset) == 3
    assert dataset.metainfo['classes'] == CLASSES
    assert [tuple(c) for c in dataset.metainfo['palette']] == list(PALETTE)
    # CocoDataset maps categories by name: label i must be the JSON's category i + 1, box for box.
    coco = json.loads((root / 'annotations' / 'train.json').read_text())
    first_image = [a for a in coco['annotations'] if a['image_id'] == 1]
    info = dataset.get_data_info(0)
    assert info['img_path'] == str(root / 'train' / '000000.png')
    assert [i['bbox_label'] for i in info['instances']] == [a['category_id'] - 1 for a in first_image]
    assert [i['bbox'] for i in info['instances']] == [
        [x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in first_image)]


def test_val_split_reuses_the_set_the_train_split_generated(tmp_path):
    root = tmp_path / 'demo'
    _build(root)
    marker_time = (root / '.complete').stat().st_mtime_ns
    assert len(_build(root, split='val', test_mode=True)) == 2
    assert (root / '.complete').stat().st_mtime_ns == marker_time


def test_style_can_be_given_as_a_config_dict(tmp_path):
    style = dict(min_objects=2, max_objects=3, small_size=[0.04, 0.05])
    dataset = _build(tmp_path / 'demo', generator_cfg=dict(GENERATOR_CFG, style=style))
    assert all(2 <= len(dataset.get_data_info(i)['instances']) <= 3 for i in range(len(dataset)))
    marker = json.loads((tmp_path / 'demo' / '.complete').read_text())
    assert SceneStyle.from_dict(marker['style']) == SceneStyle(min_objects=2, max_objects=3,
                                                               small_size=(0.04, 0.05))


def test_a_style_with_more_classes_names_them(tmp_path):
    from ghm_mmdet.datasets import class_table
    dataset = _build(tmp_path / 'demo', generator_cfg=dict(GENERATOR_CFG, style=dict(num_classes=20)))
    names, colours, _ = class_table(20)
    assert dataset.metainfo['classes'] == names and len(names) == 20
    assert [tuple(c) for c in dataset.metainfo['palette']] == list(colours)


def test_data_root_is_required(tmp_path):
    with pytest.raises(ValueError, match='GHMDemoDataset needs data_root'):
        _build('')
