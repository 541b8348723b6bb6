"""The synthetic demo set: deterministic, valid COCO, as hard as its docstring claims, safe to generate
from several processes at once."""
import json
import multiprocessing
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from ghm_mmdet.datasets.synthetic import (
    CLASS_FREQUENCIES,
    CLASSES,
    MARKER,
    PALETTE,
    SceneStyle,
    class_table,
    generate_coco_demo,
    is_complete,
    render_scene,
)

SIZE = 96
SMALL = dict(num_train=4, num_val=2, image_size=SIZE, seed=3)


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return generate_coco_demo(tmp_path_factory.mktemp('demo') / 'set', **SMALL)


@pytest.fixture(scope='module')
def scenes():
    """60 default-style 160 px scenes (what the demo config trains on), drawn without writing files."""
    return [render_scene(np.random.default_rng([0, 0, i]), 160) for i in range(60)]


def test_layout_and_marker(demo_root):
    names = set(_files(demo_root))
    assert names == ({MARKER, 'annotations/train.json', 'annotations/val.json'}
                     | {f'train/{i:06d}.png' for i in range(4)} | {f'val/{i:06d}.png' for i in range(2)})
    assert is_complete(demo_root)
    assert not any(p.name.startswith('.set.tmp-') for p in demo_root.parent.iterdir())


def test_same_seed_gives_identical_files_and_another_seed_does_not(demo_root, tmp_path):
    again = _files(generate_coco_demo(tmp_path / 'again', **SMALL))
    assert again == _files(demo_root)
    other = _files(generate_coco_demo(tmp_path / 'other', **dict(SMALL, seed=4)))
    assert other.keys() == again.keys()
    assert other['annotations/train.json'] != again['annotations/train.json']
    assert all(other[f'train/{i:06d}.png'] != again[f'train/{i:06d}.png'] for i in range(4))


def test_splits_do_not_share_images(demo_root):
    train = cv2.imread(str(demo_root / 'train' / '000000.png'))
    val = cv2.imread(str(demo_root / 'val' / '000000.png'))
    assert not np.array_equal(train, val)


@pytest.mark.parametrize('split, count', [('train', 4), ('val', 2)])
def test_annotations_are_valid_coco(demo_root, split, count):
    coco = COCO(str(demo_root / 'annotations' / f'{split}.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == count
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len({a['id'] for a in annotations}) == len(annotations) > 0
    for image in coco.loadImgs(coco.getImgIds()):
        pixels = cv2.imread(str(demo_root / split / image['file_name']))
        assert pixels.shape == (image['height'], image['width'], 3) == (SIZE, SIZE, 3)
    for a in annotations:
        x, y, w, h = a['bbox']
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= SIZE and y + h <= SIZE, a
        assert a['area'] == w * h and a['iscrowd'] == 0
        assert a['category_id'] in coco.getCatIds() and a['image_id'] in coco.getImgIds()


@pytest.mark.parametrize('seed', range(8))
def test_boxes_are_tight_around_the_drawn_object(seed):
    # One object, no clutter or noise: its box must touch its pixels (those of its class colour, within
    # the per-object jitter of 20 and shading of 7.5 per channel) on all four sides.
    style = SceneStyle(min_objects=1, max_objects=1, min_distractors=0, max_distractors=0, noise_std=0.0)
    image, boxes, labels = render_scene(np.random.default_rng(seed), 128, style)
    colour = np.asarray(PALETTE[labels[0]])[::-1]  # the image is BGR
    ys, xs = np.nonzero(np.abs(image.astype(np.int64) - colour).max(-1) <= 28)
    x, y, w, h = boxes[0].astype(int)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)


def test_scenes_are_crowded(scenes):
    counts = [len(labels) for _, _, labels in scenes]
    assert np.median(counts) >= 12
    assert min(counts) >= 5 and max(counts) <= 30


def test_many_objects_are_small(scenes):
    # COCO's "small" (< 32^2 px at ~640 px) scaled to the image: a side below 5% of it.
    areas = np.concatenate([boxes[:, 2] * boxes[:, 3] for _, boxes, _ in scenes])
    assert np.mean(areas < (0.05 * 160) ** 2) >= 0.25
    assert np.mean(areas > (0.15 * 160) ** 2) >= 0.05  # and the scale range is wide


def test_classes_are_long_tailed(scenes):
    counts = np.bincount(np.concatenate([labels for _, _, labels in scenes]), minlength=len(CLASSES))
    assert counts.min() > 0
    assert counts.max() / counts.min() >= 5


def test_objects_overlap(scenes):
    overlapping = total = 0
    for _, boxes, _ in scenes:
        x0, y0 = boxes[:, 0], boxes[:, 1]
        x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
        inter_w = np.clip(np.minimum(x1[:, None], x1) - np.maximum(x0[:, None], x0), 0, None)
        inter_h = np.clip(np.minimum(y1[:, None], y1) - np.maximum(y0[:, None], y0), 0, None)
        inter = inter_w * inter_h
        np.fill_diagonal(inter, 0)
        overlapping += int(np.sum(inter.max(1) > 0))
        total += len(boxes)
    assert overlapping / total >= 0.1


def test_background_is_cluttered(scenes):
    # Outside every box the image varies far more than its pixel noise (std 6): texture and distractors.
    stds = []
    for image, boxes, _ in scenes:
        outside = np.ones(image.shape[:2], dtype=bool)
        for x, y, w, h in boxes.astype(int):
            outside[y:y + h, x:x + w] = False
        stds.append(image[outside].astype(np.float32).std(0).mean())
    assert np.median(stds) >= 20


def _generate_after(barrier, root):
    barrier.wait()
    generate_coco_demo(root, **SMALL)


def test_concurrent_generation_gives_one_complete_set(demo_root, tmp_path):
    root = tmp_path / 'shared'
    context = multiprocessing.get_context('fork')
    barrier = context.Barrier(2)
    workers = [context.Process(target=_generate_after, args=(barrier, root)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert _files(root) == _files(demo_root)
    assert [p.name for p in tmp_path.iterdir()] == ['shared']  # no staging directory left behind


def test_existing_set_is_reused_not_rewritten(demo_root):
    marker = demo_root / MARKER
    before = marker.stat().st_mtime_ns
    assert generate_coco_demo(demo_root, **SMALL) == demo_root
    assert marker.stat().st_mtime_ns == before


def test_existing_set_with_other_parameters_is_an_error(demo_root):
    with pytest.raises(ValueError, match='generated with .*"seed": 3|generated with .*\'seed\': 3'):
        generate_coco_demo(demo_root, **dict(SMALL, seed=5))


def test_foreign_directory_is_not_overwritten(tmp_path):
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not empty'):
        generate_coco_demo(tmp_path / 'mine', **SMALL)
    assert (tmp_path / 'mine' / 'notes.txt').read_text() == 'keep me'


@pytest.mark.parametrize('kwargs, message', [
    (dict(image_size=32), 'image_size must be an int >= 64, got 32'),
    (dict(num_train=0), 'num_train must be an int >= 1, got 0'),
    (dict(seed=-1), 'seed must be an int >= 0, got -1'),
    (dict(style=SceneStyle(min_objects=4, max_objects=2)), 'min_objects <= max_objects'),
    (dict(style=SceneStyle(small_size=(0.05, 0.03))), r'small_size must be .* got \(0.05, 0.03\)'),
    (dict(style=SceneStyle(num_classes=25)), r'num_classes must be an int in \[1, 24\], got 25'),
    (dict(style=SceneStyle(num_classes=0)), r'num_classes must be an int in \[1, 24\], got 0'),
])
def test_bad_arguments_are_rejected_before_writing(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_coco_demo(tmp_path / 'set', **dict(SMALL, **kwargs))
    assert not (tmp_path / 'set').exists()


def test_marker_records_the_parameters(demo_root):
    params = json.loads((demo_root / MARKER).read_text())
    assert {k: params[k] for k in SMALL} == SMALL
    assert SceneStyle.from_dict(params['style']) == SceneStyle()


# ------------------------------------------------------------------------------------- more classes


def test_the_eight_classes_are_the_shapes():
    assert class_table() == class_table(8) == (CLASSES, PALETTE, CLASS_FREQUENCIES)


def test_twenty_classes_are_the_shapes_in_other_colours():
    names, colours, frequencies = class_table(20)
    assert names[:8] == CLASSES and colours[:8] == PALETTE
    # Class 8 is a circle in the colour of the palette's fourth entry, class 16 in its sixth.
    assert (names[8], colours[8]) == ('circle/1', PALETTE[3])
    assert (names[16], colours[16]) == ('circle/2', PALETTE[5])
    assert (names[19], colours[19]) == ('cross/2', PALETTE[0])  # shape 3, colour (3 + 5) % 8
    assert len({(name.split('/')[0], colour) for name, colour in zip(names, colours)}) == 20
    assert sum(frequencies) == pytest.approx(1.0)
    assert frequencies[0] / frequencies[-1] == pytest.approx(10.0)
    assert all(a > b for a, b in zip(frequencies, frequencies[1:]))


def test_a_twenty_class_set_uses_them(tmp_path):
    style = SceneStyle(min_objects=2, max_objects=4, num_classes=20)
    root = generate_coco_demo(tmp_path / 'set', **dict(SMALL, num_train=40, style=style))
    coco = COCO(str(root / 'annotations' / 'train.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(class_table(20)[0])
    per_image = [len(coco.getAnnIds(imgIds=[image])) for image in coco.getImgIds()]
    assert all(2 <= count <= 4 for count in per_image)
    assert max(a['category_id'] for a in coco.loadAnns(coco.getAnnIds())) > 8


def test_a_set_written_before_num_classes_existed_is_still_reused(tmp_path):
    root = generate_coco_demo(tmp_path / 'set', **SMALL)
    marker = json.loads((root / MARKER).read_text())
    del marker['style']['num_classes']
    (root / MARKER).write_text(json.dumps(marker, sort_keys=True))
    assert generate_coco_demo(root, **SMALL) == root
    with pytest.raises(ValueError, match='generated with'):
        generate_coco_demo(root, **dict(SMALL, style=SceneStyle(num_classes=9)))
