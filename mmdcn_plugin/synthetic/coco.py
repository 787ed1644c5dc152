"""Generator of a small COCO-format dataset of geometrically deformed shapes.

The dataset exists to exercise deformable convolution: the object classes differ
only in their geometry (colours and textures are drawn from one distribution for
every class), and each instance is produced from a canonical shape through
rotation, anisotropic scale, shear, perspective and a smooth elastic warp whose
strength is set by ``deformation``.  Images also contain textured backgrounds,
unannotated clutter and occlusion between objects; annotations describe only the
visible part of each object.

Layout written under ``out_dir``::

    annotations/train.json   annotations/val.json
    images/train/000000.png  images/val/000000.png  ...

Every image is produced by its own random generator derived from
``(seed, split, index)``, so the output is byte-identical for the same arguments
(with the same numpy/OpenCV versions) and independent of generation order.  The
random draws for the deformation are made at every level and only scaled by it,
so one seed gives largely the same scenes (classes, colours, sizes) at every
deformation level.

Only numpy, OpenCV and the standard library are imported here, so that the
command-line tool can load this file without torch or mmdet.
"""
import json
import os
import sys

import cv2
import numpy as np

__all__ = ['CLASSES', 'DEFORMATION_LEVELS', 'generate_synthetic_coco']

#: Object classes, in category-id order (category id = index + 1).
CLASSES = ('triangle', 'square', 'star', 'cross', 'l_shape', 'ring')

#: Allowed values of the ``deformation`` argument, weakest first.
DEFORMATION_LEVELS = ('none', 'moderate', 'strong')

# Strength of each geometric component per level.  rotation: max |angle| in
# degrees; aniso: max ratio between the two axis scales; shear: max |shear|;
# perspective: max |coefficient| of each projective term in canonical units
# (their sum stays < 1 so the shape never crosses the horizon); elastic: std of
# the displacement as a fraction of the object size.
_DEFORMATION_PARAMS = {
    'none': dict(rotation=0.0, aniso=1.0, shear=0.0, perspective=0.0, elastic=0.0),
    'moderate': dict(rotation=25.0, aniso=1.35, shear=0.2, perspective=0.12,
                     elastic=0.025),
    'strong': dict(rotation=180.0, aniso=1.9, shear=0.5, perspective=0.22,
                   elastic=0.05),
}

_SPLIT_IDS = {'train': 0, 'val': 1}
_MIN_IMAGE_SIZE = 32
_MAX_OBJECTS = 4
# Size (longest side of the undistorted-by-elastic outline) at image size 128.
_SIZE_RANGE_128 = (14.0, 60.0)
# A new object may hide at most this much of an earlier one; otherwise another
# position is tried, and after _PLACEMENT_TRIES the object is left out.
_MIN_VISIBLE_FRACTION = 0.45
_PLACEMENT_TRIES = 8
# Visible parts smaller than this (pixels) are not annotated.
_MIN_COMPONENT_AREA = 4
_MIN_INSTANCE_AREA = 12

# Canonical shapes live in [-1, 1]^2, rasterised once on a grid covering
# [-_CANON_EXTENT, _CANON_EXTENT]^2 with _CANON_RES pixels per side.
_CANON_RES = 512
_CANON_EXTENT = 1.1
# Samples per pixel side when rendering an instance's coverage.
_SUPERSAMPLE = 3


# --------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------
def _check_int(name, value, minimum):
    """Raise ValueError unless ``value`` is an int (not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f'{name} must be an integer >= {minimum}, '
                         f'got {value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value}')
    return int(value)


def _check_args(out_dir, num_train, num_val, seed, deformation, image_size):
    """Validate the public arguments; return them normalised."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise ValueError(f'out_dir must be a non-empty path, got {out_dir!r}')
    num_train = _check_int('num_train', num_train, 1)
    num_val = _check_int('num_val', num_val, 1)
    seed = _check_int('seed', seed, 0)
    image_size = _check_int('image_size', image_size, _MIN_IMAGE_SIZE)
    if deformation not in DEFORMATION_LEVELS:
        raise ValueError(
            f'deformation must be one of {", ".join(map(repr, DEFORMATION_LEVELS))}; '
            f'got {deformation!r}')
    return os.fspath(out_dir), num_train, num_val, seed, deformation, image_size


# --------------------------------------------------------------------------
# Canonical shapes
# --------------------------------------------------------------------------
def _regular_star(points, inner):
    """Vertices of a star (or a regular polygon when ``inner`` is None), apex up."""
    if inner is None:
        angles = -np.pi / 2 + 2 * np.pi * np.arange(points) / points
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    angles = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def _circle(radius, n=48):
    angles = 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], 1)


def _shape_rings(name):
    """Return (outer outline, holes) of a canonical shape, centred in [-1, 1]^2."""
    if name == 'triangle':
        outer, holes = _regular_star(3, None), []
    elif name == 'square':
        outer, holes = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float), []
    elif name == 'star':
        outer, holes = _regular_star(5, 0.42), []
    elif name == 'cross':
        a = 0.32  # half width of the arms
        outer = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                          [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]],
                         float)
        holes = []
    elif name == 'l_shape':
        t = 0.7  # arm thickness, in units of the 2-wide bounding square
        outer = np.array([[-1, -1], [-1 + t, -1], [-1 + t, 1 - t], [1, 1 - t],
                          [1, 1], [-1, 1]], float)
        holes = []
    elif name == 'ring':
        outer, holes = _circle(1.0), [_circle(0.55)]
    else:
        raise KeyError(name)
    # Centre the bounding box and scale its longest side to 2 so that every shape
    # fills the canonical square the same way and rotates about its middle.
    lo, hi = outer.min(0), outer.max(0)
    centre, scale = (lo + hi) / 2, 2.0 / (hi - lo).max()
    return (outer - centre) * scale, [(h - centre) * scale for h in holes]


_CANON_CACHE = {}


def _canonical(name):
    """Canonical (soft mask, outline points) of a class, rasterised once."""
    if name not in _CANON_CACHE:
        outer, holes = _shape_rings(name)
        shift = 4  # sub-pixel bits of cv2.fillPoly

        def to_px(pts):
            px = (pts + _CANON_EXTENT) / (2 * _CANON_EXTENT) * _CANON_RES - 0.5
            return np.round(px * (1 << shift)).astype(np.int32)

        mask = np.zeros((_CANON_RES, _CANON_RES), np.uint8)
        cv2.fillPoly(mask, [to_px(outer)], 255, cv2.LINE_AA, shift)
        for hole in holes:
            cv2.fillPoly(mask, [to_px(hole)], 0, cv2.LINE_AA, shift)
        _CANON_CACHE[name] = (mask.astype(np.float32) / 255.0, outer)
    return _CANON_CACHE[name]


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------
def _project(h, pts):
    """Apply the 3x3 homography ``h`` to (N, 2) points."""
    q = np.c_[pts, np.ones(len(pts))] @ h.T
    return q[:, :2] / q[:, 2:3]


def _shape_homography(rng, level):
    """Canonical -> unit-free object plane: perspective, then shear/scale/rotation.

    All variates are drawn at every level and only scaled by it (see module
    docstring).
    """
    p = _DEFORMATION_PARAMS[level]
    u_rot, u_aniso, u_shear, u_px, u_py = rng.uniform(-1, 1, 5)
    persp = np.array([[1, 0, 0], [0, 1, 0],
                      [u_px * p['perspective'], u_py * p['perspective'], 1]])
    ratio = p['aniso'] ** u_aniso
    scale = np.diag([np.sqrt(ratio), 1 / np.sqrt(ratio), 1])
    shear = np.array([[1, u_shear * p['shear'], 0], [0, 1, 0], [0, 0, 1]])
    theta = np.deg2rad(u_rot * p['rotation'])
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return rot @ shear @ scale @ persp


def _render_alpha(rng, name, level, size):
    """Render one deformed instance as a soft mask in its own patch.

    Returns (alpha (h, w) float32 in [0, 1], margin): the undeformed-by-elastic
    outline's bounding box starts at (margin, margin) inside the patch and its
    longest side is ``size`` pixels.
    """
    canon, outline = _canonical(name)
    h_lin = _shape_homography(rng, level)
    # Elastic control grid is drawn at every level for the same reason as above.
    grid = rng.standard_normal((2, 4, 4))
    pts = _project(h_lin, outline)
    lo, hi = pts.min(0), pts.max(0)
    k = size / (hi - lo).max()
    amp = _DEFORMATION_PARAMS[level]['elastic'] * size
    margin = int(np.ceil(2.5 * amp)) + 2
    to_patch = np.array([[k, 0, margin - k * lo[0]], [0, k, margin - k * lo[1]],
                         [0, 0, 1]])
    h_full = to_patch @ h_lin
    pw = int(np.ceil(k * (hi - lo)[0])) + 2 * margin + 1
    ph = int(np.ceil(k * (hi - lo)[1])) + 2 * margin + 1

    # Sample _SUPERSAMPLE^2 points per pixel and average them below, so edges
    # are anti-aliased and alpha >= 0.5 means "at least half covered".
    ss = _SUPERSAMPLE
    sub = (np.arange(ph * ss) + 0.5) / ss - 0.5, (np.arange(pw * ss) + 0.5) / ss - 0.5
    ys, xs = np.meshgrid(*sub, indexing='ij')
    if amp > 0:
        # Smooth displacement: a 4x4 random grid upsampled with cubic
        # interpolation, so the warp bends the shape without tearing it.
        dx = cv2.resize(grid[0], (pw * ss, ph * ss), interpolation=cv2.INTER_CUBIC)
        dy = cv2.resize(grid[1], (pw * ss, ph * ss), interpolation=cv2.INTER_CUBIC)
        xs, ys = xs + dx * amp, ys + dy * amp
    # Pull back every patch pixel to canonical coordinates.
    inv = np.linalg.inv(h_full)
    cx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    cy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    cw = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
    behind = cw <= 1e-6  # beyond the horizon: not part of the shape
    cw = np.where(behind, 1.0, cw)
    to_canon_px = _CANON_RES / (2 * _CANON_EXTENT)
    map_x = (cx / cw + _CANON_EXTENT) * to_canon_px - 0.5
    map_y = (cy / cw + _CANON_EXTENT) * to_canon_px - 0.5
    map_x[behind] = -10.0
    map_y[behind] = -10.0
    alpha = cv2.remap(canon, map_x.astype(np.float32), map_y.astype(np.float32),
                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=0)
    alpha = cv2.resize(alpha, (pw, ph), interpolation=cv2.INTER_AREA)
    return np.clip(alpha, 0.0, 1.0), margin


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
# Masks -> COCO annotations
# --------------------------------------------------------------------------
def _bridge(outer, hole):
    """Splice ``hole`` into ``outer`` via their closest vertices.

    COCO polygons cannot have holes; a zero-width bridge turns outer + hole into
    one polygon whose (even-odd) rasterisation leaves the hole empty.
    """
    d = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    hole_loop = np.concatenate([hole[j:], hole[:j + 1]])
    return np.concatenate([outer[:i + 1], hole_loop, outer[i:]])


def _mask_to_annotation(mask):
    """Polygons, bbox and area of a visible mask, or None if too small.

    Each 8-connected part becomes one polygon (holes bridged in).  Parts that are
    tiny or too thin for a polygon are dropped, and bbox/area are computed from
    the parts kept, so they always agree with the polygons (the polygon runs a
    quarter pixel inside the mask's outer pixel edges).
    """
    num, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    kept = np.zeros_like(mask)
    polygons = []
    for i in range(1, num):
        if stats[i, cv2.CC_STAT_AREA] < _MIN_COMPONENT_AREA:
            continue
        part = (labels == i).astype(np.uint8)
        # Contours run through the centres of boundary pixels, i.e. half a
        # pixel inside the mask.  Tracing the mask upsampled 2x puts them a
        # quarter pixel inside instead, so the polygon rasterises back to
        # (almost) the same pixels; it also gives 1-px-thin parts an area.
        part2 = np.repeat(np.repeat(part, 2, 0), 2, 1)
        contours, hierarchy = cv2.findContours(part2, cv2.RETR_CCOMP,
                                               cv2.CHAIN_APPROX_SIMPLE)
        hierarchy = hierarchy[0]
        for c_idx, contour in enumerate(contours):
            if hierarchy[c_idx][3] != -1 or len(contour) < 3:
                continue  # holes are handled with their outer contour
            poly = contour.reshape(-1, 2)
            for h_idx, hole in enumerate(contours):
                if hierarchy[h_idx][3] == c_idx and len(hole) >= 3:
                    poly = _bridge(poly, hole.reshape(-1, 2))
            # Upsampled pixel centre -> COCO coordinates (pixel i spans [i, i+1]).
            polygons.append([float(v) for v in ((poly + 0.5) / 2).ravel()])
            kept |= part
    area = int(kept.sum())
    if not polygons or area < _MIN_INSTANCE_AREA:
        return None
    ys, xs = np.nonzero(kept)
    x0, y0 = int(xs.min()), int(ys.min())
    bbox = [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]
    return dict(segmentation=polygons, bbox=bbox, area=float(area))


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


def _make_image(seed_seq, size, level):
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
        alpha, margin = _render_alpha(orng, CLASSES[cls], level, obj_size)
        hard = alpha >= 0.5
        if hard.sum() < _MIN_INSTANCE_AREA:
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
        if visible.sum() < max(_MIN_INSTANCE_AREA, 0.1 * full_areas[k]):
            continue  # almost fully hidden: not recognisable, not annotated
        ann = _mask_to_annotation(visible)
        if ann is not None:
            ann['category_id'] = cls + 1
            annotations.append(ann)
    return img_u8, annotations


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------
class _Progress:
    """``generating <split>: i/n`` on stderr.

    On a terminal the line is rewritten in place; otherwise (logs, CI) only
    about ten lines are printed, so captured output stays short.
    """

    def __init__(self, split, total):
        self.split, self.total = split, total
        self.in_place = hasattr(sys.stderr, 'isatty') and sys.stderr.isatty()
        self.every = max(1, total // 10)

    def update(self, done):
        if self.in_place:
            end = '\n' if done == self.total else ''
            sys.stderr.write(f'\rgenerating {self.split}: {done}/{self.total}{end}')
        elif done % self.every == 0 or done == self.total:
            sys.stderr.write(f'generating {self.split}: {done}/{self.total}\n')
        sys.stderr.flush()


def _write_split(out_dir, split, num, seed, level, size, show_progress):
    progress = _Progress(split, num) if show_progress else None
    img_dir = os.path.join(out_dir, 'images', split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(num):
        seq = np.random.SeedSequence([seed, _SPLIT_IDS[split], index])
        img, anns = _make_image(seq, size, level)
        file_name = f'{index:06d}.png'
        # OpenCV writes BGR; the array is RGB.
        cv2.imwrite(os.path.join(img_dir, file_name), img[..., ::-1],
                    [cv2.IMWRITE_PNG_COMPRESSION, 3])
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
        for ann in anns:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=ann['category_id'], bbox=ann['bbox'],
                                    segmentation=ann['segmentation'], area=ann['area'],
                                    iscrowd=0))
        if progress:
            progress.update(index + 1)

    coco = dict(
        info=dict(description='mmdcn_plugin synthetic deformed shapes', split=split,
                  seed=seed, deformation=level, image_size=size),
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape')
                    for i, name in enumerate(CLASSES)],
    )
    ann_dir = os.path.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    ann_file = os.path.join(ann_dir, f'{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f, separators=(',', ':'))
    return dict(ann_file=ann_file, img_dir=img_dir, num_images=len(images),
                num_instances=len(annotations))


def generate_synthetic_coco(out_dir, num_train=300, num_val=60, seed=0,
                            deformation='moderate', image_size=128, progress=True):
    """Write a COCO-format dataset of deformed shapes under ``out_dir``.

    Args:
        out_dir (str | os.PathLike): Root folder; created if needed.  Existing
            files of the same names are overwritten, others are left alone.
        num_train (int): Number of training images (>= 1).
        num_val (int): Number of validation images (>= 1).
        seed (int): Non-negative seed; the same arguments give byte-identical
            files.
        deformation (str): One of :data:`DEFORMATION_LEVELS`. ``'none'``: only
            position and size vary; ``'moderate'``/``'strong'``: rotation,
            anisotropic scale, shear, perspective and elastic warp of
            increasing strength.
        image_size (int): Side of the square images in pixels (>= 32).
            Object sizes scale with it (14-60 px at 128).
        progress (bool): Show progress on stderr.

    Returns:
        dict: ``out_dir``, ``classes`` and, per split (``'train'``, ``'val'``),
        a dict with ``ann_file``, ``img_dir``, ``num_images`` and
        ``num_instances``.

    Raises:
        ValueError: If an argument is out of range or of the wrong type.
    """
    out_dir, num_train, num_val, seed, deformation, image_size = _check_args(
        out_dir, num_train, num_val, seed, deformation, image_size)
    result = dict(out_dir=os.path.abspath(out_dir), classes=CLASSES)
    for split, num in (('train', num_train), ('val', num_val)):
        result[split] = _write_split(out_dir, split, num, seed, deformation,
                                     image_size, bool(progress))
    return result
