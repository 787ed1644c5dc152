"""One config-to-model builder for every tool (FLOPs, ONNX export, benchmarks, study).

It does what MMDetection's ``init_detector`` does that the tools need, without
what they do not want (a COCO class-name fallback with a warning, a CUDA default):

- the config's ``default_scope`` (``'mmdet'`` when it names none) becomes the
  current scope before building, so ``type='ResNet'`` and mmcv's
  ``build_conv_layer`` resolve in MMDetection's registries;
- SyncBN is reverted to BN (the tools run on one process, often on a CPU);
- the model comes back in eval mode, with the config it was built from as
  ``model.cfg`` (as ``init_detector`` leaves it).
"""
import copy
import logging
import os
import os.path as osp
from typing import TYPE_CHECKING, Optional, Union

import torch
from torch import nn

if TYPE_CHECKING:
    from mmengine.config import Config


def existing_file(argument: str, path) -> str:
    """``path`` as a ``str`` when it names an existing file; errors name ``argument``.

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: there is no file at ``path``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f'{argument}: expected a file path, got {type(path).__name__}')
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{argument}: expected an existing file, got {path!r} '
                                '(it does not exist)')
    return path


def load_config(config: Union[str, 'Config'], cfg_options: Optional[dict] = None) -> 'Config':
    """``config`` (a path or a :class:`~mmengine.config.Config`) with ``cfg_options`` merged.

    A ``Config`` passed in is deep-copied, so the caller's object is never changed.

    Raises:
        FileNotFoundError: ``config`` is a path that does not exist.
        TypeError: ``config`` is neither a path nor a ``Config``.
    """
    from mmengine.config import Config
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        cfg = Config.fromfile(existing_file('config', config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def strip_backbone_dcn(cfg):
    """``cfg`` with the backbone's deformable layers removed (``dcn=None``), in place.

    The baseline of a ``backbone.dcn`` config: the same model with plain 3x3 convs.

    Raises:
        ValueError: the config's backbone has no ``dcn`` to remove.
    """
    backbone = cfg.model.get('backbone', {})
    if backbone.get('dcn') is None:
        raise ValueError('strip_dcn: expected a config whose model.backbone.dcn is set, got '
                         f"backbone.dcn={backbone.get('dcn')!r}; name a baseline config instead")
    backbone['dcn'] = None
    backbone['stage_with_dcn'] = (False,) * len(backbone.get('stage_with_dcn', (False,) * 4))
    return cfg


def _init_weights_quietly(model: nn.Module) -> None:
    # init_weights logs every parameter at INFO, on stdout where the tools print tables.
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def build_model_from_config(config: Union[str, 'Config'], checkpoint: Optional[str] = None,
                            cfg_options: Optional[dict] = None, device: str = 'cpu',
                            strip_dcn: bool = False, init_weights: bool = False,
                            seed: Optional[int] = None) -> nn.Module:
    """Build the model of an MMDetection config; load ``checkpoint`` when given.

    Args:
        config (str, PathLike or Config): the config file, or a loaded config (copied, not changed).
        checkpoint (str, PathLike or None): weights to load (``map_location='cpu'``, through the
            plugin's safe loading); the checkpoint's ``dataset_meta``, when it has one,
            becomes ``model.dataset_meta``.
        cfg_options (dict or None): ``key=value`` overrides merged into the config, as
            ``--cfg-options`` of MMDetection's tools.
        device (str): where the model goes.
        strip_dcn (bool): build the baseline, see :func:`strip_backbone_dcn`.
        init_weights (bool): run ``model.init_weights()`` (the ``init_cfg`` initialisers,
            as the Runner does before training), with its per-parameter log silenced.
        seed (int or None): ``torch.manual_seed(seed)`` before building, so random
            weights are the same from call to call.

    Returns:
        nn.Module: the model in eval mode on ``device``; ``model.cfg`` is the config.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
        ValueError: ``strip_dcn`` on a config without ``model.backbone.dcn``.
    """
    import mmdcn_plugin  # noqa: F401  (registers the layers; safe checkpoint loading)
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    cfg = load_config(config, cfg_options)
    if checkpoint is not None:
        checkpoint = existing_file('checkpoint', checkpoint)
    if strip_dcn:
        strip_backbone_dcn(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if seed is not None:
        torch.manual_seed(seed)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if init_weights:
        _init_weights_quietly(model)
    if checkpoint is not None:
        from mmengine.runner import load_checkpoint
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        if meta.get('dataset_meta'):
            model.dataset_meta = dict(meta['dataset_meta'])
    model.cfg = cfg
    return model.to(device).eval()


def build_backbone_from_config(config: Union[str, 'Config'],
                               cfg_options: Optional[dict] = None,
                               plain_convs: bool = False) -> nn.Module:
    """Build only the backbone of an MMDetection config (``model.backbone``).

    What a stage that trains the backbone on its own (the shape-classification
    pretraining) needs: the config loaded and its scope set as
    :func:`build_model_from_config` does, no detector around the backbone, and the
    module left as ``MODELS.build`` returns it (train mode, PyTorch's default
    initialisation: ``init_weights`` is not run).

    Args:
        config (str, PathLike or Config): the config file, or a loaded config (copied, not changed).
        cfg_options (dict or None): ``key=value`` overrides merged into the config.
        plain_convs (bool): replace the backbone's deformable layers by plain convs
            (:func:`strip_backbone_dcn`) when it has some; a backbone without is built
            as it is.

    Returns:
        nn.Module: the backbone, SyncBN reverted to BN.

    Raises:
        FileNotFoundError: ``config`` does not exist.
    """
    import mmdcn_plugin  # noqa: F401  (registers the layers)
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    cfg = load_config(config, cfg_options)
    if plain_convs and cfg.model.get('backbone', {}).get('dcn') is not None:
        strip_backbone_dcn(cfg)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return revert_sync_batchnorm(MODELS.build(cfg.model.backbone))
