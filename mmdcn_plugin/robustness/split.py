"""Write a transformed copy of a COCO split (images + annotation file), cached on disk.

Layout of one cached split (``write_transformed_split``)::

    CACHE/annotations.json    the transformed annotations (boxes from the masks)
    CACHE/images/<name>.png   every image, transformed (PNG: lossless)
    CACHE/meta.json           what it was made from; a different source or rule remakes it

The folder is written under a temporary name and renamed when complete, so an
interrupted run never leaves a half-written split that a later run would trust.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import sys
import time

import numpy as np

from .transforms import (FILL, MIN_VISIBLE, check_fill, check_value, transform_annotations,
                         transform_matrix, warp_image)

# Bump when the output of the same inputs changes, so old caches are remade.
FORMAT_VERSION = 1


def split_name(transform: str, value: float) -> str:
    """Folder name of a transformed split: ``rotate_30``, ``scale_0.5``, ``shear_-15``."""
    return f'{transform}_{check_value(transform, value):g}'


def _fingerprint(ann_file: str, img_dir: str, images: list) -> str:
    """sha1 of the annotation file and of each image file's name, size and mtime."""
    digest = hashlib.sha1()
    with open(ann_file, 'rb') as f:
        digest.update(f.read())
    for info in images:
        st = os.stat(osp.join(img_dir, info['file_name']))
        digest.update(f'{info["file_name"]}:{st.st_size}:{st.st_mtime_ns}'.encode())
    return digest.hexdigest()


def _read_image(path: str) -> np.ndarray:
    """BGR ndarray[H, W, 3] as MMDetection's loader reads it (mmcv, 'color')."""
    import mmcv
    img = mmcv.imread(path, flag='color', channel_order='bgr')
    if img is None:
        raise ValueError(f'image {path!r} could not be read (expected e.g. PNG or JPEG)')
    return img


def _progress(label: str, done: int, total: int) -> None:
    every = max(1, total // 10)
    if done % every == 0 or done == total:
        print(f'[robustness] {label}: {done}/{total} images', file=sys.stderr, flush=True)


def write_transformed_split(ann_file: str, img_dir: str, transform: str, value: float,
                            cache_dir: str, min_visible: float = MIN_VISIBLE, fill=FILL,
                            progress: bool = True) -> dict:
    """Transform every image and annotation of a COCO split; reuse a matching cache.

    Args:
        ann_file (str): the source COCO annotation file (polygon segmentations).
        img_dir (str): the folder its ``file_name`` entries are relative to.
        transform (str), value (float): see :mod:`mmdcn_plugin.robustness.transforms`.
        cache_dir (str): the folder for this split (e.g. ``OUT/data/rotate_30``).
        min_visible (float): the instance rule's threshold (module doc of transforms).
        fill (int or tuple): the constant for uncovered pixels.
        progress (bool): print ``i/n images`` about ten times on stderr.

    Returns:
        dict: ``ann_file``, ``img_dir`` (with a trailing ``/``), ``data_root``,
        ``num_images``, ``n_instances`` (non-crowd annotations), ``n_ignored`` (crowd),
        ``cached`` (True when an existing split was reused).
    """
    for name, path, check in (('ann_file', ann_file, osp.isfile), ('img_dir', img_dir, osp.isdir)):
        if not check(path):
            raise FileNotFoundError(f'{name} {path!r} does not exist')
    value = check_value(transform, value)
    check_fill(fill)
    if not 0 <= min_visible <= 1:
        raise ValueError(f'min_visible must be in [0, 1], got {min_visible!r}')
    with open(ann_file) as f:
        coco = json.load(f)
    meta = dict(format_version=FORMAT_VERSION, transform=transform, value=value,
                min_visible=float(min_visible), fill=fill if np.isscalar(fill) else list(fill),
                source_ann_file=osp.abspath(ann_file), source_img_dir=osp.abspath(img_dir),
                source_fingerprint=_fingerprint(ann_file, img_dir, coco.get('images', [])))
    meta_file = osp.join(cache_dir, 'meta.json')
    if osp.isfile(meta_file):
        with open(meta_file) as f:
            old = json.load(f)
        if {k: old.get(k) for k in meta} == meta:
            return _summary(cache_dir, old, cached=True)

    tmp = f'{cache_dir.rstrip(os.sep)}.tmp-{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(osp.join(tmp, 'images'))
    by_image = group_by_image(coco.get('annotations', []))
    images, annotations = [], []
    label = f'{transform}={value:g}'
    total = len(coco.get('images', []))
    for i, info in enumerate(coco.get('images', [])):
        img = _read_image(osp.join(img_dir, info['file_name']))
        h, w = img.shape[:2]
        if (info.get('width', w), info.get('height', h)) != (w, h):
            raise ValueError(f'{ann_file}: image {info["file_name"]!r} is {w}x{h} pixels, but '
                             f'the annotation file says {info.get("width")}x{info.get("height")}')
        matrix = transform_matrix(transform, value, w, h)
        name = osp.splitext(info['file_name'])[0] + '.png'
        out_path = osp.join(tmp, 'images', name)
        os.makedirs(osp.dirname(out_path), exist_ok=True)
        if not _write_png(out_path, warp_image(img, matrix, fill)):
            raise OSError(f'could not write {out_path!r}')
        images.append(dict(info, file_name=name, width=w, height=h))
        annotations += transform_annotations(by_image.get(info['id'], []), matrix, w, h,
                                             min_visible, where=ann_file)
        if progress:
            _progress(label, i + 1, total)
    info = dict(coco.get('info', {}), robustness=dict(transform=transform, value=value,
                                                      min_visible=float(min_visible)))
    with open(osp.join(tmp, 'annotations.json'), 'w') as f:
        json.dump(dict(coco, info=info, images=images, annotations=annotations), f,
                  separators=(',', ':'))
    meta.update(num_images=len(images),
                n_instances=sum(1 for a in annotations if not a.get('iscrowd')),
                n_ignored=sum(1 for a in annotations if a.get('iscrowd')),
                written=time.strftime('%Y-%m-%dT%H:%M:%S'))
    with open(osp.join(tmp, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    shutil.rmtree(cache_dir, ignore_errors=True)
    os.makedirs(osp.dirname(osp.abspath(cache_dir)), exist_ok=True)
    os.replace(tmp, cache_dir)
    return _summary(cache_dir, meta, cached=False)


def _write_png(path: str, img: np.ndarray) -> bool:
    import cv2
    return bool(cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 1]))


def _summary(cache_dir: str, meta: dict, cached: bool) -> dict:
    return dict(data_root=cache_dir, ann_file=osp.join(cache_dir, 'annotations.json'),
                img_dir=osp.join(cache_dir, 'images') + '/', num_images=meta['num_images'],
                n_instances=meta['n_instances'], n_ignored=meta['n_ignored'], cached=cached)


def group_by_image(annotations) -> dict:
    """``{image_id: [annotation, ...]}`` in file order."""
    by_image = {}
    for ann in annotations:
        by_image.setdefault(ann['image_id'], []).append(ann)
    return by_image
