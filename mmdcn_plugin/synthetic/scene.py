"""One image of the dataset: background, clutter, objects placed with little occlusion.

``make_image`` draws everything from the seed sequence it is given, so one image does not
depend on the others; its objects come from ``shapes.py`` and their visible parts
become COCO annotations through ``annotation.py``.
"""
import cv2
import numpy as np

from .annotation import MIN_INSTANCE_AREA, mask_to_annotation
from .shapes import CLASSES, render_alpha

_MAX_OBJECTS = 4
# Size (longest side of the undistorted-by-elastic outline) at image size 128.
_SIZE_RANGE_128 = (14.0, 60.0)
# A new object may hide at most this much of an earlier one; otherwise another
# position is tried, and after _PLACEMENT_TRIES the object is left out.
_MIN_VISIBLE_FRACTION = 0.45
_PLACEMENT_TRIES = 8


# --------------------------------------------------------------------------
# Appearance: backgrounds, textures, clutter
# --------------------------------------------------------------------------
def _smooth_noise(rng, h, w, cells):
    """Low-frequency noise in [0, 1] of shape (h, w)."""
    g = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def _pattern(rng, h, w, scale):
    """A random mixing pattern in [0, 1] of shape (h, w, 1).

    ``scale`` is the rough size in pixels of the surface it covers; stripe
    periods and noise cells follow it.
    """
    kind = rng.integers(5)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    along = xs * np.cos(theta) + ys * np.sin(theta)
    if kind == 0:  # flat
        t = np.zeros((h, w), np.float32)
    elif kind == 1:  # linear gradient
        t = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    elif kind == 2:  # stripes
        period = rng.uniform(3.0, max(4.0, scale / 4))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * along / period + rng.uniform(0, 6.3))
    elif kind == 3:  # smooth blotches
        t = _smooth_noise(rng, h, w, int(rng.integers(2, 7)))
    else:  # checkerboard
        period = rng.uniform(3.0, max(4.0, scale / 3))
        across = -xs * np.sin(theta) + ys * np.cos(theta)
        t = ((np.floor(along / period) + np.floor(across / period)) % 2)
    return t.astype(np.float32)[..., None]


def _surface(rng, h, w, scale, colours=None):
    """Texture (h, w, 3) in [0, 1]: a pattern mixing two colours plus noise."""
    if colours is None:
        colours = rng.random((2, 3)).astype(np.float32)
    c0, c1 = colours
    t = _pattern(rng, h, w, scale)
    img = c0 * (1 - t) + c1 * t
    noise = rng.uniform(0.0, 0.05)
    img = img + rng.standard_normal((h, w, 3)).astype(np.float32) * noise
    return img.astype(np.float32)


def _background(rng, size):
    # Backgrounds get lower contrast between their two colours than objects so
    # the objects stand out, yet stripes/edges still compete with them.
    base = rng.random(3).astype(np.float32)
    other = np.clip(base + rng.uniform(-0.35, 0.35, 3), 0, 1).astype(np.float32)
    return _surface(rng, size, size, size, np.stack([base, other]))


def _paint(img, alpha, colour):
    """Alpha-blend a flat colour into ``img`` in place."""
    a = alpha[..., None]
    img *= 1 - a
    img += a * colour


def _add_clutter(rng, img):
    """Unannotated strokes, blobs and arcs, drawn beneath the objects."""
    size = img.shape[0]
    unit = size / 128.0
    for _ in range(int(rng.integers(2, 9))):
        layer = np.zeros(img.shape[:2], np.uint8)
        kind = rng.integers(3)
        # Thin (1-2 px at size 128) so strokes read as lines, never as filled shapes.
        thick = max(1, int(round(rng.uniform(1, 2.4) * unit)))
        if kind == 0:  # curved stroke: a walk whose heading turns gently
            n = int(rng.integers(3, 8))
            heading = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.5, n).cumsum()
            step = rng.uniform(0.04, 0.1) * size
            steps = step * np.stack([np.cos(heading), np.sin(heading)], 1)
            pts = (steps.cumsum(0) + rng.uniform(0, size, 2)).round().astype(np.int32)
            cv2.polylines(layer, [pts], False, 255, thick, cv2.LINE_AA)
        elif kind == 1:  # small filled blob
            centre = tuple(int(v) for v in rng.uniform(0, size, 2))
            axes = tuple(int(v) for v in rng.uniform(2, 7, 2) * unit)
            cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255,
                        -1, cv2.LINE_AA)
        else:  # open arc
            centre = tuple(int(v) for v in rng.uniform(0, size, 2))
            radius = int(rng.uniform(4, 16) * unit)
            start = float(rng.uniform(0, 360))
            cv2.ellipse(layer, centre, (radius, radius), 0.0, start,
                        start + rng.uniform(60, 220), 255, thick, cv2.LINE_AA)
        _paint(img, layer.astype(np.float32) / 255.0,
               rng.random(3).astype(np.float32))


# --------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------
def _place(rng, label, full_areas, alpha_mask, margin, size):
    """Pick a patch offset where the new object hides little of earlier ones.

    Returns (x, y) or None.  Offsets keep the object's outline inside the image;
    the elastic margin may be clipped.
    """
    ph, pw = alpha_mask.shape
    for _ in range(_PLACEMENT_TRIES):
        x = int(rng.integers(-margin, max(-margin, size - pw + margin) + 1))
        y = int(rng.integers(-margin, max(-margin, size - ph + margin) + 1))
        sub, region = _clip(alpha_mask, x, y, size)
        covered = label[region][sub]
        ok = True
        for k, full in enumerate(full_areas):
            visible = int((label == k).sum()) - int((covered == k).sum())
            if visible < _MIN_VISIBLE_FRACTION * full:
                ok = False
                break
        if ok:
            return x, y
    return None


def _clip(patch, x, y, size):
    """Parts of ``patch`` placed at (x, y) and of the image that overlap."""
    ph, pw = patch.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + pw, size), min(y + ph, size)
    sub = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    return sub, (slice(y0, y1), slice(x0, x1))


def make_image(seed_seq, size, level):
    """Render one image; return (uint8 RGB image, list of annotation dicts)."""
    scene_seq, *object_seqs = seed_seq.spawn(1 + _MAX_OBJECTS)
    rng = np.random.default_rng(scene_seq)
    img = _background(rng, size)
    _add_clutter(rng, img)
    num_objects = int(rng.integers(1, _MAX_OBJECTS + 1))

    unit = size / 128.0
    lo, hi = (max(8.0, v * unit) for v in _SIZE_RANGE_128)
    label = np.full((size, size), -1, np.int16)  # top-most instance per pixel
    categories, full_areas = [], []
    for obj_seq in object_seqs[:num_objects]:
        # Each object has its own stream so that one object's draws (e.g. how
        # many placements it needed) do not change the next object.
        orng = np.random.default_rng(obj_seq)
        cls = int(orng.integers(len(CLASSES)))
        obj_size = float(np.exp(orng.uniform(np.log(lo), np.log(hi))))
        alpha, margin = render_alpha(orng, CLASSES[cls], level, obj_size)
        hard = alpha >= 0.5
        if hard.sum() < MIN_INSTANCE_AREA:
            continue
        offset = _place(orng, label, full_areas, hard, margin, size)
        if offset is None:
            continue
        sub, region = _clip(alpha, *offset, size)
        weight = sub[..., None]
        for _ in range(6):
            texture = _surface(orng, *alpha.shape, obj_size)
            sub_tex, _ = _clip(texture, *offset, size)
            # Re-draw colours that would melt into the background under them;
            # the test is colour-blind to the class, so classes stay alike.
            mean_obj = (sub_tex * weight).sum((0, 1)) / max(weight.sum(), 1e-6)
            mean_bg = (img[region] * weight).sum((0, 1)) / max(weight.sum(), 1e-6)
            if np.abs(mean_obj - mean_bg).sum() > 0.45:
                break
        img[region] = img[region] * (1 - weight) + sub_tex * weight
        sub_hard, _ = _clip(hard, *offset, size)
        label[region][sub_hard] = len(categories)
        categories.append(cls)
        full_areas.append(int(sub_hard.sum()))

    # Light sensor noise over everything, so edges are not perfectly clean.
    img += rng.standard_normal(img.shape).astype(np.float32) * 0.015
    img_u8 = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)

    annotations = []
    for k, cls in enumerate(categories):
        visible = (label == k).astype(np.uint8)
        if visible.sum() < max(MIN_INSTANCE_AREA, 0.1 * full_areas[k]):
            continue  # almost fully hidden: not recognisable, not annotated
        ann = mask_to_annotation(visible)
        if ann is not None:
            ann['category_id'] = cls + 1
            annotations.append(ann)
    return img_u8, annotations
