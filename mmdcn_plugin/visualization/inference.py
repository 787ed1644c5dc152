"""A detector and an image for the offset pictures: load, read, infer.

The model comes from :func:`mmdcn_plugin.apis.build_model_from_config`, the
package's one config-to-model builder; what is added here is what the pictures
need: the check that there are deformable layers, class names from the config
when the checkpoint has none, and inference on one BGR image.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Union

import numpy as np
from mmengine.model import is_model_wrapper
from torch import nn

from ..layers import deformable_layers


def read_image(image: Union[str, np.ndarray]) -> np.ndarray:
    """BGR uint8 ``ndarray[H, W, 3]`` from a path (or an array, passed through).

    Raises:
        FileNotFoundError: the path does not exist.
        TypeError: ``image`` is neither a path nor an array.
        ValueError: the file is not an image OpenCV can decode, or the array is
            not ``[H, W, 3]``.
    """
    import mmcv
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image array must be [H, W, 3] (BGR), got shape {image.shape}')
        return image
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f'image must be a path or an ndarray, got {type(image).__name__}')
    path = os.fspath(image)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image {path!r} does not exist')
    img = mmcv.imread(path, channel_order='bgr')
    if img is None:
        raise ValueError(f'image {path!r} could not be read: not an image file OpenCV can '
                         'decode (expected e.g. PNG or JPEG)')
    return img


def infer_image(model: nn.Module, image: np.ndarray, cfg=None):
    """``mmdet.apis.inference_detector`` on one image; ``cfg`` when the model has none.

    (Named ``run_inference`` before; :func:`mmdcn_plugin.apis.inference.run_inference`
    is the other job, a config run on image files through ``DetInferencer``.)

    Args:
        model (nn.Module): a detector in eval mode (wrappers are unwrapped).
        image (ndarray[H, W, 3]): BGR.
        cfg (Config or None): the config with the test pipeline, needed when the
            model carries no ``cfg`` (it was not built by :func:`init_model`).

    Returns:
        DetDataSample: with ``pred_instances`` and the pipeline's ``metainfo``.
    """
    from mmdet.apis import inference_detector
    if is_model_wrapper(model):
        model = model.module
    added = False
    if getattr(model, 'cfg', None) is None:
        if cfg is None:
            raise ValueError('the model has no .cfg (it was not built by init_model): '
                             'pass cfg, the config with its test pipeline')
        model.cfg, added = cfg, True
    try:
        return inference_detector(model, image)
    finally:
        if added:
            del model.cfg


def class_names(model: nn.Module, cfg=None) -> Sequence[str]:
    """The model's class names, else the config's test dataset's, else none."""
    if is_model_wrapper(model):
        model = model.module
    meta = getattr(model, 'dataset_meta', None) or {}
    if meta.get('classes'):
        return meta['classes']
    cfg = cfg if cfg is not None else getattr(model, 'cfg', None)
    try:
        return tuple(cfg.test_dataloader.dataset.metainfo.classes)
    except (AttributeError, KeyError, TypeError):
        return ()


def init_model(config: str, checkpoint: Optional[str] = None, device: str = 'cpu') -> nn.Module:
    """A detector with deformable layers, in eval mode, carrying its config as ``model.cfg``.

    Class names come from the checkpoint's ``dataset_meta``, else from the config's
    test dataset (``metainfo.classes``); never COCO's by default.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
        ValueError: the model built from ``config`` has no DeformableConv2d.
    """
    from ..apis import build_model_from_config

    model = build_model_from_config(config, checkpoint, device=device)
    if not deformable_layers(model):
        raise ValueError(f'config {config!r}: no deformable layer found (the model built '
                         'from it has no DeformableConv2d; use a DCN config, e.g. '
                         "model.backbone.dcn=dict(type='DeformableConv2d'))")
    meta = getattr(model, 'dataset_meta', None) or {}
    if not meta.get('classes'):
        classes = class_names(model)
        if classes:
            model.dataset_meta = dict(meta, classes=tuple(classes))
    return model
