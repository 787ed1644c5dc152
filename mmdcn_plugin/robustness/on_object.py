"""Where the offsets go: how much of a deformable layer's sampling lands on the object.

For every instance and every deformable layer (c3, c4, c5 of a ResNet with DCN):

* the activation point is the instance's most interior mask pixel (the maximum of the
  mask's distance transform: on a ring it lies on the ring, never in the hole), snapped
  to the nearest output cell of the layer, as in the offset pictures;
* its sampling locations are traced to image pixels
  (:func:`mmdcn_plugin.visualization.trace_image_point`) through the ``num_layers``
  stacked deformable layers that end at this layer (default 1: the layer alone,
  ``kh * kw`` locations), once with the learned offsets and once with every offset
  ignored (the regular grid: what the same layers sample with their offsets zeroed);
* a location is *on the object* when the pixel it rounds to belongs to the instance's
  own mask; locations outside the image are off.

A layer's fraction pools its instances: locations on the object / all locations.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .transforms import rasterize


@dataclass
class OnObjectCount:
    """Sampling locations of one deformable layer on their instances' masks.

    Attributes:
        layer (str): module path, e.g. ``backbone.layer3.5.conv2``.
        stage (str or None): ``c2``..``c5`` for ``backbone.layer1``..``layer4``.
        instances (int): instances measured.
        points (int): locations traced (per kind: deformable and regular alike).
        on_deformable (int), on_regular (int): of those, how many land on the mask.
    """

    layer: str
    stage: Optional[str]
    instances: int = 0
    points: int = 0
    on_deformable: int = 0
    on_regular: int = 0

    @property
    def deformable(self) -> float:
        """Fraction of the learned sampling locations on the object (nan: no points)."""
        return self.on_deformable / self.points if self.points else float('nan')

    @property
    def regular(self) -> float:
        """The same fraction for the regular grid (offsets zeroed)."""
        return self.on_regular / self.points if self.points else float('nan')

    def as_dict(self) -> dict:
        return dict(layer=self.layer, stage=self.stage, instances=self.instances,
                    points=self.points, deformable=self.deformable, regular=self.regular)


def stage_of(layer: str) -> Optional[str]:
    """``'c4'`` for ``'backbone.layer3.5.conv2'`` (ResNet stage n+1); None otherwise."""
    parts = layer.split('.')
    for part in parts[:2]:
        if part.startswith('layer') and part[5:].isdigit():
            return f'c{int(part[5:]) + 1}'
    return None


def interior_point(mask: np.ndarray) -> Tuple[float, float]:
    """(x, y) of the mask pixel farthest from the mask's boundary.

    Args:
        mask (ndarray[H, W]): nonzero on the instance.

    Raises:
        ValueError: the mask is empty.
    """
    import cv2
    mask = np.asarray(mask)
    if mask.ndim != 2 or not mask.any():
        raise ValueError(f'mask must be a non-empty 2-D array, got shape {mask.shape} with '
                         f'{int(np.count_nonzero(mask))} pixels set')
    padded = np.pad((mask != 0).astype(np.uint8), 1)      # the image border is a boundary
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def on_mask(points_xy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ndarray[M] bool: does each (x, y) of ndarray[M, 2] round to a pixel of the mask?"""
    h, w = mask.shape
    ix, iy = np.rint(points_xy[:, 0]).astype(np.int64), np.rint(points_xy[:, 1]).astype(np.int64)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    hit = np.zeros(len(points_xy), bool)
    hit[inside] = mask[iy[inside], ix[inside]] != 0
    return hit


def count_on_object(chain: Sequence, mask: np.ndarray, metainfo: dict,
                    point_xy: Optional[Sequence[float]] = None) -> Tuple[int, int, int]:
    """``(on_deformable, on_regular, points)`` for one instance and one chain of layers.

    Args:
        chain (sequence of LayerCapture): consecutive deformable layers, forward order.
        mask (ndarray[H, W]): the instance, in original image pixels.
        metainfo (dict): the inference result's metainfo (padded input shape, resize).
        point_xy ((x, y) or None): the activation point; default :func:`interior_point`.
    """
    from ..visualization import trace_image_point
    if point_xy is None:
        point_xy = interior_point(mask)
    traced = trace_image_point(chain, point_xy, metainfo)
    return (int(on_mask(traced.deformable_xy, mask).sum()),
            int(on_mask(traced.regular_xy, mask).sum()), len(traced.deformable_xy))


def _check_masks(masks, image: np.ndarray, index: int) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f'sample {index}: masks must be ndarray[N, H, W] with the image\'s '
                         f'H, W = {image.shape[:2]}; got shape {masks.shape}')
    return masks


def on_object_fractions(model, samples: Iterable[Tuple[Union[str, np.ndarray], np.ndarray]],
                        num_layers: int = 1, cfg=None) -> List[OnObjectCount]:
    """Per deformable layer, the sampling locations on the instance's own mask.

    Args:
        model (nn.Module): a detector in eval mode with a ``cfg`` (e.g. from
            :func:`mmdcn_plugin.visualization.init_model`), or pass ``cfg``.
        samples (iterable of (image, masks)): image as a path or BGR ndarray[H, W, 3];
            masks as ndarray[N, H, W] (nonzero on each instance), e.g.
            :func:`coco_samples`.  Empty masks are skipped.
        num_layers (int): stacked deformable layers traced per layer (>= 1).
        cfg (Config or None): the config with the test pipeline, when the model has none.

    Returns:
        list of OnObjectCount, one per deformable layer that ran, in forward order
        (see :func:`by_stage` for c3/c4/c5 totals).
    """
    from ..visualization import capture_layers, infer_image, read_image
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f'num_layers must be a positive int, got {num_layers!r}')
    counts: Dict[str, OnObjectCount] = {}
    for index, (image, masks) in enumerate(samples):
        img = read_image(image)
        masks = _check_masks(masks, img, index)
        with capture_layers(model) as captures:
            result = infer_image(model, img, cfg)
        if not captures:
            raise ValueError('no deformable layer ran: the model has no DeformableConv2d '
                             'on its inference path')
        for i, capture in enumerate(captures):
            chain = captures[max(0, i - num_layers + 1):i + 1]
            count = counts.setdefault(capture.name,
                                      OnObjectCount(capture.name, stage_of(capture.name)))
            for mask in masks:
                if not mask.any():
                    continue
                on_def, on_reg, total = count_on_object(chain, mask, result.metainfo)
                count.instances += 1
                count.points += total
                count.on_deformable += on_def
                count.on_regular += on_reg
    return list(counts.values())


def by_stage(counts: Sequence[OnObjectCount]) -> Dict[str, OnObjectCount]:
    """The counts of layers of the same stage added up: ``{'c3': ..., 'c4': ..., 'c5': ...}``.

    Points and hits are summed over the stage's layers; ``instances`` stays the number
    of instances (every layer measured the same ones).
    """
    stages: Dict[str, OnObjectCount] = {}
    for c in counts:
        if c.stage is None:
            continue
        total = stages.setdefault(c.stage, OnObjectCount(c.stage, c.stage))
        total.instances = max(total.instances, c.instances)
        total.points += c.points
        total.on_deformable += c.on_deformable
        total.on_regular += c.on_regular
    return dict(sorted(stages.items()))


def coco_samples(ann_file: str, img_dir: str, max_images: Optional[int] = None
                 ) -> Iterator[Tuple[str, np.ndarray]]:
    """``(image path, masks ndarray[N, H, W] uint8)`` per image of a COCO split.

    Masks are the polygon segmentations rasterised as MMDetection does; crowd regions
    and images without instances are skipped.  Works on the transformed splits of
    :func:`~mmdcn_plugin.robustness.split.write_transformed_split` as well.
    """
    import json
    import os.path as osp
    from .split import group_by_image
    with open(ann_file) as f:
        coco = json.load(f)
    by_image = group_by_image(coco.get('annotations', []))
    done = 0
    for info in coco.get('images', []):
        if max_images is not None and done >= max_images:
            return
        anns = [a for a in by_image.get(info['id'], []) if not a.get('iscrowd')]
        if not anns:
            continue
        h, w = info['height'], info['width']
        masks = np.stack([rasterize(a['segmentation'], w, h) for a in anns])
        done += 1
        yield osp.join(img_dir, info['file_name']), masks


def on_object_by_value(model, ann_file: str, img_dir: str, transform: str, values,
                       cache_dir: str, num_layers: int = 1, max_images: Optional[int] = None,
                       cfg=None) -> List[dict]:
    """:func:`on_object_fractions` per stage on the split transformed by each value.

    Do the offsets follow the object as it turns?  Each value's split is written (or
    reused) under ``cache_dir`` as in the mAP sweep, with the same rule for instances
    that leave the image (ignore regions are not measured).

    Returns:
        list of dict, one per (value, stage): ``value``, ``stage``, ``instances``,
        ``points``, ``deformable``, ``regular``.
    """
    import os.path as osp
    from .split import split_name, write_transformed_split
    from .transforms import parse_values
    rows = []
    for value in parse_values(transform, values):
        split = write_transformed_split(ann_file, img_dir, transform, value,
                                        osp.join(cache_dir, split_name(transform, value)),
                                        progress=False)
        counts = on_object_fractions(
            model, coco_samples(split['ann_file'], split['img_dir'], max_images),
            num_layers=num_layers, cfg=cfg)
        for stage, count in by_stage(counts).items():
            row = count.as_dict()
            del row['layer']
            rows.append(dict(value=value, **row))
    return rows
