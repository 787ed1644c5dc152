"""OffsetVisualizationHook: pictures of the deformable layers on a fixed image while training."""
import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmdet.registry import HOOKS

from ..visualization import (check_layer_name, deformable_layers, read_image, save_figures,
                             visualize_offsets)


@HOOKS.register_module()
class OffsetVisualizationHook(Hook):
    """Every ``interval`` epochs, draw where the deformable layers sample on one image.

    Writes ``<out_dir>/epoch_<e>_sampling_points.png``, ``..._feature_response.png``
    and ``..._detections.png`` (see :func:`mmdcn_plugin.visualization.visualize_offsets`)
    after the training epoch, with the model in eval mode for the drawing.

    Config::

        custom_hooks = [dict(type='OffsetVisualizationHook',
                             image_path='data/synthetic/images/val/000000.png',
                             interval=1)]

    A model without deformable layers gets a warning and no pictures (so the hook
    can sit in a base config shared with a plain baseline).

    Args:
        image_path (str): the image; checked when training starts.
        interval (int): epochs between two pictures. Default: 1.
        out_dir (str or None): where to write; default ``<work_dir>/offset_vis``.
        layer (str or None), points (list of (x, y) or None), num_layers (int),
            detections (bool), score_thr (float): as for ``visualize_offsets``.
    """

    priority = 'LOW'

    def __init__(self, image_path: str, interval: int = 1, out_dir: Optional[str] = None,
                 layer: Optional[str] = None, points: Optional[Sequence] = None,
                 num_layers: int = 3, detections: bool = True, score_thr: float = 0.3):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got {interval!r}')
        self.image_path = image_path
        self.interval = interval
        self.out_dir = out_dir
        self.layer = layer
        self.points = points
        self.num_layers = num_layers
        self.detections = detections
        self.score_thr = score_thr
        self.written = []
        self._enabled = False

    def before_train(self, runner) -> None:
        # Fail at the start, not after the first epoch's worth of training.
        read_image(self.image_path)
        if not deformable_layers(runner.model):
            # A baseline config inheriting the hook from a shared base: nothing to draw.
            runner.logger.warning('OffsetVisualizationHook: the model has no '
                                  'DeformableConv2d; no pictures will be written')
            self._enabled = False
            return
        check_layer_name(runner.model, self.layer)
        self._enabled = True
        if self.out_dir is None:
            self.out_dir = osp.join(runner.work_dir, 'offset_vis')

    def after_train_epoch(self, runner) -> None:
        if not self._enabled or not self.every_n_epochs(runner, self.interval):
            return
        if runner.rank != 0:
            return  # one process draws; every rank would write the same files at once
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        was_training = model.training
        model.eval()
        try:
            figures = visualize_offsets(
                model, self.image_path, cfg=runner.cfg, layer=self.layer, points=self.points,
                num_layers=self.num_layers, detections=self.detections,
                score_thr=self.score_thr, note=f'epoch {runner.epoch + 1}')
        finally:
            model.train(was_training)
        paths = save_figures(figures, self.out_dir, prefix=f'epoch_{runner.epoch + 1}_')
        self.written.extend(paths)
        runner.logger.info(f'OffsetVisualizationHook wrote {", ".join(paths)}')
