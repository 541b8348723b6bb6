"""A deterministic synthetic detection set in COCO format, generated on the spot so that the demo needs no
download. Framework-free: numpy and OpenCV only.

Each image holds 5-30 coloured shapes of eight classes (by default; up to 24) on textured clutter. The set
is built to have the difficulties GHM addresses (arXiv:1811.05181, Sec. 1): very many easy background anchors
against few positives, many small objects, a long-tailed class distribution, distractors that look like objects but are
not annotated, and partial occlusion. The shapes and colours stay distinct enough that a tiny detector
trained from scratch on two CPU cores learns them in minutes.

Layout written under ``root``::

    annotations/train.json   annotations/val.json   (COCO: images, annotations, categories)
    train/000000.png ...     val/000000.png ...      (BGR PNGs, image_size x image_size)
    .complete                (JSON of the generation parameters; written last)
"""
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring', 'star', 'frame', 'half-disc')
# RGB; also the palette mmdet's visualiser draws the classes with.
PALETTE = ((230, 40, 40), (40, 200, 60), (50, 90, 235), (240, 220, 40), (220, 60, 220), (40, 220, 220),
           (250, 140, 30), (245, 245, 245))
# Relative class frequencies: a long tail, the most frequent class 10x the rarest.
CLASS_FREQUENCIES = (0.30, 0.20, 0.15, 0.11, 0.08, 0.07, 0.06, 0.03)
#: The most classes a set can have: each of the 8 shapes in 3 colours (see :func:`class_table`).
MAX_CLASSES = 3 * len(CLASSES)
#: How far along the palette the second and third colour of a shape lie (no two classes look alike).
_COLOUR_SHIFTS = (0, 3, 5)

MARKER = '.complete'
# Recorded in the marker. Bump it whenever the files for given arguments change, so that sets written by an
# older generator are refused instead of silently reused.
FORMAT_VERSION = 1
SPLITS = ('train', 'val')


@dataclasses.dataclass(frozen=True)
class SceneStyle:
    """How hard the scenes are. Sizes are fractions of the image side.

    Attributes:
        min_objects, max_objects: annotated objects asked for per image (uniform); fewer are kept only
            when no free place is found within the placement attempts.
        small_fraction: share of objects drawn with a side in ``small_size``; COCO calls an object small
            below 32 px at ~640 px, i.e. a side below 0.05 of the image.
        small_size, other_size: side ranges (``other_size`` is sampled log-uniformly).
        max_occlusion: the largest share of an object's pixels that later objects may cover.
        min_distractors, max_distractors: unannotated clutter (lines, long ellipses, blobs) per image.
        noise_std: per-pixel Gaussian noise, in grey levels.
        num_classes: 8 (the shapes) or up to :data:`MAX_CLASSES`: see :func:`class_table`.
    """
    min_objects: int = 5
    max_objects: int = 30
    small_fraction: float = 0.45
    small_size: Tuple[float, float] = (0.03, 0.045)
    other_size: Tuple[float, float] = (0.05, 0.25)
    max_occlusion: float = 0.35
    min_distractors: int = 4
    max_distractors: int = 14
    noise_std: float = 6.0
    num_classes: int = len(CLASSES)

    @classmethod
    def from_dict(cls, fields: dict) -> 'SceneStyle':
        """From ``dataclasses.asdict`` output or a config dict (JSON and configs turn tuples to lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def generate_coco_demo(root: Union[str, os.PathLike], num_train: int = 800, num_val: int = 200,
                       image_size: int = 160, seed: int = 0,
                       style: Optional[SceneStyle] = None) -> Path:
    """Write the demo set under ``root`` unless a complete one is already there; return ``root``.

    The set is a pure function of the arguments: the same arguments give byte-identical files. Safe to call
    from several processes at once (distributed ranks): each builds the set in a private directory next to
    ``root`` and renames it into place, so ``root`` is either absent or complete. A complete set made with
    other arguments is an error rather than being silently reused or overwritten.

    Args:
        root: directory to create (its parent is created if needed).
        num_train, num_val: number of images per split, >= 1.
        image_size: side of the square images in pixels, >= 64.
        seed: any non-negative int.
        style: scene difficulty; ``SceneStyle()`` when None.
    """
    params = _check_params(num_train, num_val, image_size, seed, style or SceneStyle())
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f'{root} exists and is not a directory')
    # Emptiness before the marker: a set renamed into place between the two reads is then seen as complete
    # rather than as a foreign non-empty directory.
    non_empty = root.is_dir() and any(root.iterdir())
    if _read_marker(root) is not None:
        _check_same_params(root, params)
        return root
    if non_empty:
        raise FileExistsError(f'{root} exists, is not empty and holds no complete demo set '
                              f'({MARKER} missing); remove it or choose another root')

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{root.name}.tmp-', dir=root.parent))
    try:
        _write_set(staging, params)
        try:
            # Atomic on POSIX; fails when another process has put a non-empty root in place first.
            os.rename(staging, root)
        except OSError:
            if _read_marker(root) is None:
                raise
            _check_same_params(root, params)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root


def class_table(num_classes: int = len(CLASSES)) -> Tuple[Tuple[str, ...], Tuple[Tuple[int, int, int], ...],
                                                        Tuple[float, ...]]:
    """Names, RGB colours and relative frequencies of ``num_classes`` classes.

    The first 8 are :data:`CLASSES` in :data:`PALETTE` with :data:`CLASS_FREQUENCIES`; class ``k >= 8`` is
    shape ``k % 8`` in the palette's colour ``3`` or ``5`` places further on (named ``'circle/1'``...), so
    that a class is told by its shape and colour together. Beyond 8, the frequencies fall geometrically
    from the first class to the last, 10:1 as in the 8-class set.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes must be an int in [1, {MAX_CLASSES}], got {num_classes!r}')
    shapes = [k % len(CLASSES) for k in range(num_classes)]
    names = tuple(CLASSES[s] if k < len(CLASSES) else f'{CLASSES[s]}/{k // len(CLASSES)}'
                  for k, s in enumerate(shapes))
    colours = tuple(PALETTE[(s + _COLOUR_SHIFTS[k // len(CLASSES)]) % len(PALETTE)]
                    for k, s in enumerate(shapes))
    if num_classes == len(CLASSES):
        frequencies = CLASS_FREQUENCIES
    else:
        weights = 10.0 ** (-np.arange(num_classes) / max(num_classes - 1, 1))
        frequencies = tuple(float(w) for w in weights / weights.sum())
    return names, colours, frequencies


def is_complete(root: Union[str, os.PathLike]) -> bool:
    """Whether ``root`` holds a fully written demo set."""
    return _read_marker(Path(root)) is not None


def render_scene(rng: np.random.Generator, image_size: int,
                 style: SceneStyle = SceneStyle()) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image and its annotations.

    Returns:
        image: ``(image_size, image_size, 3)`` uint8, BGR (OpenCV's order, as written to PNG).
        boxes: ``(K, 4)`` float64 ``[x, y, w, h]`` in pixels: the tight box of each object's full shape
            (objects lie wholly inside the image; at most ``max_occlusion`` of each is hidden).
        labels: ``(K,)`` int64 class indices into ``class_table(style.num_classes)``'s names.
    """
    size = image_size
    image = _background(rng, size)
    for _ in range(rng.integers(style.min_distractors, style.max_distractors + 1)):
        _draw_distractor(rng, image)

    # owner[y, x] = index of the object visible at that pixel, -1 for none; it bounds the occlusion.
    owner = np.full((size, size), -1, dtype=np.int64)
    # Pixels of each object's whole shape and those still visible.
    full_area, visible = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    boxes, labels = [], []
    names, colours, frequencies = class_table(style.num_classes)
    wanted = rng.integers(style.min_objects, style.max_objects + 1)
    for _ in range(wanted * 20):
        if len(labels) == wanted:
            break
        label = rng.choice(len(names), p=frequencies)
        if rng.random() < style.small_fraction:
            side = rng.uniform(*style.small_size) * size
        else:
            side = np.exp(rng.uniform(*np.log(style.other_size))) * size
        side = max(side, 5.0)  # below ~5 px the shapes stop being distinguishable at all
        mask, x0, y0 = _shape_mask(rng, CLASSES[label % len(CLASSES)], side, size)
        region = (slice(y0, y0 + mask.shape[0]), slice(x0, x0 + mask.shape[1]))
        covered = owner[region][mask]
        visible_after = visible - np.bincount(covered[covered >= 0], minlength=len(visible))
        if np.any(visible_after < (1.0 - style.max_occlusion) * full_area):
            continue
        owner[region][mask] = len(visible)
        visible = np.append(visible_after, mask.sum())
        full_area = np.append(full_area, mask.sum())
        _paint(rng, image, region, mask, colours[label])
        ys, xs = np.nonzero(mask)
        boxes.append([x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
        labels.append(label)

    # Thin lines over everything: clutter that crosses objects without hiding them.
    for _ in range(rng.integers(0, 3)):
        _draw_line(rng, image, thickness=1)
    noisy = image.astype(np.float32) + rng.normal(0.0, style.noise_std, image.shape).astype(np.float32)
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    return (image[..., ::-1].copy(), np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64))


# ---------------------------------------------------------------------------------------------------------
# Writing

def _check_params(num_train, num_val, image_size, seed, style: SceneStyle) -> dict:
    for name, value, low in (('num_train', num_train, 1), ('num_val', num_val, 1),
                             ('image_size', image_size, 64), ('seed', seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f'{name} must be an int >= {low}, got {value!r}')
        if value < low:
            raise ValueError(f'{name} must be an int >= {low}, got {value}')
    if not isinstance(style, SceneStyle):
        raise TypeError(f'style must be a SceneStyle, got {type(style).__name__}')
    if not 1 <= style.min_objects <= style.max_objects:
        raise ValueError(f'need 1 <= min_objects <= max_objects, got {style.min_objects}, '
                         f'{style.max_objects}')
    if not 0.0 <= style.small_fraction <= 1.0:
        raise ValueError(f'small_fraction must be in [0, 1], got {style.small_fraction}')
    for name in ('small_size', 'other_size'):
        low, high = getattr(style, name)
        if not 0.0 < low <= high <= 0.5:
            raise ValueError(f'{name} must be (low, high) with 0 < low <= high <= 0.5, got ({low}, {high})')
    if not 0.0 <= style.max_occlusion < 1.0:
        raise ValueError(f'max_occlusion must be in [0, 1), got {style.max_occlusion}')
    class_table(style.num_classes)  # checks it
    return dict(format_version=FORMAT_VERSION, num_train=int(num_train), num_val=int(num_val),
                image_size=int(image_size), seed=int(seed), style=dataclasses.asdict(style))


def _write_set(directory: Path, params: dict) -> None:
    style = SceneStyle.from_dict(params['style'])
    (directory / 'annotations').mkdir()
    for split_index, split in enumerate(SPLITS):
        (directory / split).mkdir()
        images, annotations = [], []
        for index in range(params[f'num_{split}']):
            # One generator per image: any image can be regenerated alone, and the splits never share one.
            rng = np.random.default_rng([params['seed'], split_index, index])
            image, boxes, labels = render_scene(rng, params['image_size'], style)
            file_name = f'{index:06d}.png'
            if not cv2.imwrite(str(directory / split / file_name), image):
                raise OSError(f'could not write {directory / split / file_name}')
            image_id = index + 1
            images.append(dict(id=image_id, file_name=file_name, width=params['image_size'],
                               height=params['image_size']))
            for box, label in zip(boxes.tolist(), labels.tolist()):
                annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                        category_id=label + 1, bbox=box, area=box[2] * box[3],
                                        iscrowd=0))
        coco = dict(
            info=dict(description=f'ghm_mmdet synthetic demo set, {split} split',
                      version=str(FORMAT_VERSION)),
            images=images, annotations=annotations,
            categories=[dict(id=i + 1, name=name, supercategory='shape')
                        for i, name in enumerate(class_table(style.num_classes)[0])])
        with open(directory / 'annotations' / f'{split}.json', 'w') as f:
            json.dump(coco, f)
    # Last: its presence is what marks the set complete.
    with open(directory / MARKER, 'w') as f:
        json.dump(params, f, sort_keys=True)


def _read_marker(root: Path) -> Optional[dict]:
    try:
        with open(root / MARKER) as f:
            return json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _check_same_params(root: Path, params: dict) -> None:
    found = _read_marker(root)
    if isinstance(found.get('style'), dict):  # a set written before a style field existed has its default
        found = dict(found, style=dict(dataclasses.asdict(SceneStyle()), **found['style']))
    if found != json.loads(json.dumps(params)):
        raise ValueError(f'{root} holds a demo set generated with {found}, not the requested {params}; '
                         f'remove it to regenerate or choose another root')


# ---------------------------------------------------------------------------------------------------------
# Drawing

def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth, desaturated colour fields plus a finer texture; returns ``(size, size, 3)`` float32 RGB."""
    cells = rng.integers(3, 8)
    coarse = cv2.resize(rng.uniform(40, 210, (cells, cells, 3)).astype(np.float32), (size, size),
                        interpolation=cv2.INTER_CUBIC)
    grey = coarse.mean(axis=2, keepdims=True)
    # Desaturated so that broad background regions never take a class colour.
    coarse = grey + 0.35 * (coarse - grey)
    texture = cv2.resize(rng.normal(0, 18, (size // 4, size // 4, 1)).astype(np.float32), (size, size),
                         interpolation=cv2.INTER_LINEAR)[..., None]
    return np.clip(coarse + texture, 0, 255)


def _muted_colour(rng: np.random.Generator) -> Tuple[float, float, float]:
    """A low-saturation colour: clutter must not share the classes' saturated colours."""
    grey = rng.uniform(30, 225)
    tint = rng.uniform(-35, 35, 3)
    return tuple(float(c) for c in np.clip(grey + tint, 0, 255))


def _draw_line(rng: np.random.Generator, image: np.ndarray, thickness: int) -> None:
    size = image.shape[0]
    p0, p1 = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
    cv2.line(image, tuple(int(v) for v in p0), tuple(int(v) for v in p1), _muted_colour(rng), thickness)


def _draw_distractor(rng: np.random.Generator, image: np.ndarray) -> None:
    """Unannotated clutter: lines, elongated ellipses or irregular blobs, none of them a class shape."""
    size = image.shape[0]
    kind = rng.integers(3)
    if kind == 0:
        _draw_line(rng, image, thickness=int(rng.integers(1, 3)))
    elif kind == 1:
        centre = tuple(int(v) for v in rng.uniform(0, size, 2))
        major = rng.uniform(0.06, 0.2) * size
        # Aspect >= 2.5 so that an ellipse is never mistaken for a circle.
        axes = (int(major), max(1, int(major / rng.uniform(2.5, 5.0))))
        cv2.ellipse(image, centre, axes, rng.uniform(0, 180), 0, 360, _muted_colour(rng), -1)
    else:
        centre = rng.uniform(0, size, 2)
        count = rng.integers(6, 11)
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(0.3, 1.0, count) * rng.uniform(0.03, 0.12) * size
        points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(image, [np.round(points).astype(np.int32)], _muted_colour(rng))


def _unit_outline(name: str):
    """Polygons (lists of ``(P, 2)`` arrays) of a shape centred at 0 with radius ~1, and hole polygons."""
    def regular(count, radius=1.0, phase=0.0):
        angles = phase + 2 * np.pi * np.arange(count) / count
        return radius * np.stack([np.cos(angles), np.sin(angles)], 1)

    if name in ('circle', 'ring'):
        outer = regular(48)
        return [outer], ([regular(48, 0.55)] if name == 'ring' else [])
    if name in ('square', 'frame'):
        outer = regular(4, phase=np.pi / 4)
        return [outer], ([regular(4, 0.55, np.pi / 4)] if name == 'frame' else [])
    if name == 'triangle':
        return [regular(3, phase=-np.pi / 2)], []
    if name == 'cross':
        a, b = 1.0, 0.34
        arm = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b],
                        [-a, b], [-a, -b], [-b, -b]])
        return [arm], []
    if name == 'star':
        outer, inner = regular(5, 1.0, -np.pi / 2), regular(5, 0.45, -np.pi / 2 + np.pi / 5)
        return [np.stack([outer, inner], 1).reshape(-1, 2)], []
    if name == 'half-disc':
        angles = np.linspace(0, np.pi, 25)
        return [np.stack([np.cos(angles), np.sin(angles) - 0.5], 1)], []
    raise ValueError(f'unknown shape {name!r}')


def _shape_mask(rng: np.random.Generator, name: str, side: float, size: int):
    """A randomly rotated and placed shape of about ``side`` px: its boolean mask and the mask's top-left
    corner ``(x0, y0)`` in the image. The shape lies wholly inside the image."""
    outer, holes = _unit_outline(name)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outline = np.concatenate(outer)
    rotated = outline @ rotation.T
    # Scale so that the rotated shape's larger extent equals `side`.
    scale = side / max(np.ptp(rotated[:, 0]), np.ptp(rotated[:, 1]))
    patch = int(np.ceil(side)) + 2
    shift = 4  # fixed-point sub-pixel vertices for cv2.fillPoly
    centre_in_patch = patch / 2.0 - (rotated.min(0) + rotated.max(0)) / 2 * scale

    def to_patch(polygons):
        return [np.round(((p @ rotation.T) * scale + centre_in_patch) * (1 << shift)).astype(np.int32)
                for p in polygons]

    mask = np.zeros((patch, patch), dtype=np.uint8)
    cv2.fillPoly(mask, to_patch(outer), 1, lineType=cv2.LINE_8, shift=shift)
    if holes:
        cv2.fillPoly(mask, to_patch(holes), 0, lineType=cv2.LINE_8, shift=shift)
    x0, y0 = (int(v) for v in rng.integers(0, size - patch + 1, 2))
    return mask.astype(bool), x0, y0


def _paint(rng: np.random.Generator, image: np.ndarray, region, mask: np.ndarray, rgb) -> None:
    """Fill ``mask`` with the class colour, jittered per object and shaded across it like a lit surface."""
    colour = np.asarray(rgb, dtype=np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    height, width = mask.shape
    gradient = rng.uniform(-1, 1, 2) * 15.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    shading = (xs / max(width - 1, 1) - 0.5) * gradient[0] + (ys / max(height - 1, 1) - 0.5) * gradient[1]
    painted = np.clip(colour + shading[..., None], 0, 255)
    image[region][mask] = painted[mask]
