"""The dataset's classes: canonical shapes, and one instance deformed and rendered.

Each instance is its class's canonical outline mapped through rotation, anisotropic
scale, shear and perspective, then an elastic warp, whose strengths are set per
deformation level, and rendered anti-aliased as a soft mask in a patch of its own.
Only numpy and OpenCV are imported (see ``coco.py``).
"""
import cv2
import numpy as np

__all__ = ['CLASSES', 'DEFORMATION_LEVELS', 'render_alpha']

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


# Canonical shapes live in [-1, 1]^2, rasterised once on a grid covering
# [-_CANON_EXTENT, _CANON_EXTENT]^2 with _CANON_RES pixels per side.
_CANON_RES = 512
_CANON_EXTENT = 1.1
# Samples per pixel side when rendering an instance's coverage.
_SUPERSAMPLE = 3


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

    All variates are drawn at every level and only scaled by it (see the
    docstring of ``coco.py``).
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


def render_alpha(rng, name, level, size):
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
