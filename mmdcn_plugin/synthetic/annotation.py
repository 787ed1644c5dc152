"""A visible instance mask as a COCO annotation: polygons (holes bridged), bbox, area."""
import cv2
import numpy as np

# Visible parts smaller than this (pixels) are not annotated.
_MIN_COMPONENT_AREA = 4
MIN_INSTANCE_AREA = 12


def _bridge(outer, hole):
    """Splice ``hole`` into ``outer`` via their closest vertices.

    COCO polygons cannot have holes; a zero-width bridge turns outer + hole into
    one polygon whose (even-odd) rasterisation leaves the hole empty.
    """
    d = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    hole_loop = np.concatenate([hole[j:], hole[:j + 1]])
    return np.concatenate([outer[:i + 1], hole_loop, outer[i:]])


def mask_to_annotation(mask):
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
    if not polygons or area < MIN_INSTANCE_AREA:
        return None
    ys, xs = np.nonzero(kept)
    x0, y0 = int(xs.min()), int(ys.min())
    bbox = [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]
    return dict(segmentation=polygons, bbox=bbox, area=float(area))
