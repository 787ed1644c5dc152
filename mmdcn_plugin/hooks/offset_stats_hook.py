"""OffsetStatsHook: how far the deformable layers move their sampling points, while training.

Every ``interval`` training iterations it records, per :class:`DeformableConv2d`
(named by its module path, e.g. ``backbone.layer3.0.conv2``):

* ``mean_px`` / ``max_px``: mean and max offset magnitude ``|(dy, dx)|`` in pixels
  of the layer's input map;
* ``outside_frac``: the fraction of sampling points outside the input map, by the
  op's own rule (:func:`mmdcn_plugin.ops.inside_image`: a point is inside only when
  ``-1 < y < H`` and ``-1 < x < W``, with ``y`` = regular grid + ``dy``, as given by
  :func:`mmdcn_plugin.ops.sampling_points`).  A plain 3x3 conv with padding 1
  already has points on the padding (``y = -1`` or ``y = H``): that is
  the value at zero offsets, not an anomaly.  The rule is strict, so a point
  nudged from ``y = -1`` to ``y = -0.999`` counts as inside (it reads 0.1% of the
  edge pixel): the value drops as soon as offsets leave exact zero, and its trend
  over training is what tells runaway offsets;
* ``mask_mean``: the mean modulation mask (DCNv2 only).

Runaway offsets (points thrown off the map, where they read zeros and get no
gradient) and collapsing masks show up here long before they show up in the loss.

The scalars go to the message hub as ``offset_stats/<layer>/<stat>`` and to every
visual backend through ``runner.visualizer.add_scalars`` (TensorBoard, when the
config enables it), and a compact table goes to the training log.  The keys have
no ``train/`` prefix on purpose: the LoggerHook would otherwise repeat the last
(stale) value on every one of its own log lines between two of ours.

Cost: nothing between logging iterations.  Forward hooks on the offset heads are
registered in ``before_train_iter`` of a logging iteration only and removed in its
``after_train_iter``; statistics are reduced to a few scalars inside the hook, so
no offset tensor is kept.
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from mmengine.hooks import Hook
from mmdet.registry import HOOKS

from ..layers import deformable_layers
from ..ops import inside_image, sampling_points

STAT_NAMES = ('mean_px', 'max_px', 'outside_frac', 'mask_mean')


class OffsetStats:
    """Running statistics of one layer's offsets and masks over one or more calls.

    A layer called several times in one iteration (a head shared across FPN levels)
    accumulates all its calls.
    """

    def __init__(self):
        self.points = 0
        self.magnitude_sum = 0.0
        self.magnitude_max = 0.0
        self.outside = 0
        self.mask_sum = 0.0
        self.mask_count = 0

    @torch.no_grad()
    def update(self, offset: Tensor, mask: Optional[Tensor], head,
               input_size: Tuple[int, int]) -> None:
        """Add one call.

        Args:
            offset (Tensor[N, 2*G*kh*kw, H_out, W_out]): (dy, dx) pairs, mmcv's layout.
            mask (Tensor[N, G*kh*kw, H_out, W_out] or None): activated masks.
            head (BaseOffsetHead): the head that returned them; it carries the
                layer's kernel size, stride, padding and dilation.
            input_size ((H, W)): the layer's input map.
        """
        offset = offset.detach().float()
        n, _, h_out, w_out = offset.shape
        pairs = offset.reshape(n, -1, 2, h_out * w_out)           # [N, G*K, (dy, dx), P]
        magnitude = pairs.pow(2).sum(2).sqrt()
        y, x = sampling_points(offset, head.kernel_size, head.stride, head.padding,
                               head.dilation)                      # [N, G, K, H_out, W_out]
        inside = inside_image(y, x, input_size)
        self.points += magnitude.numel()
        self.magnitude_sum += magnitude.sum().item()
        self.magnitude_max = max(self.magnitude_max, magnitude.max().item())
        self.outside += int(inside.numel() - inside.sum().item())
        if mask is not None:
            self.mask_sum += mask.detach().float().sum().item()
            self.mask_count += mask.numel()

    def summary(self) -> Dict[str, float]:
        """``mean_px``, ``max_px``, ``outside_frac`` and, with masks, ``mask_mean``."""
        if self.points == 0:
            return {}
        out = dict(mean_px=self.magnitude_sum / self.points, max_px=self.magnitude_max,
                   outside_frac=self.outside / self.points)
        if self.mask_count:
            out['mask_mean'] = self.mask_sum / self.mask_count
        return out


def offset_statistics(offset: Tensor, mask: Optional[Tensor], head,
                      input_size: Tuple[int, int]) -> Dict[str, float]:
    """Statistics of one offset head output (see the module docstring).

    Args:
        offset (Tensor[N, 2*G*kh*kw, H_out, W_out]), mask (Tensor[N, G*kh*kw, H_out,
            W_out] or None): what ``head(x)`` returned.
        head (BaseOffsetHead): the head (for the layer's geometry).
        input_size ((H, W)): spatial size of ``x``.
    """
    stats = OffsetStats()
    stats.update(offset, mask, head, input_size)
    return stats.summary()


@HOOKS.register_module()
class OffsetStatsHook(Hook):
    """Log offset statistics of every deformable layer every ``interval`` iterations.

    Config::

        custom_hooks = [dict(type='OffsetStatsHook', interval=50)]

    Args:
        interval (int): training iterations between two records. Default: 50.
        log (bool): also write the table to the training log. Default: True.
    """

    priority = 'NORMAL'

    def __init__(self, interval: int = 50, log: bool = True):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got {interval!r}')
        self.interval = interval
        self.log = bool(log)
        self._handles: list = []
        self._stats: Dict[str, OffsetStats] = {}
        self._warned = False

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        layers = deformable_layers(runner.model)
        if not layers:
            if not self._warned:
                runner.logger.warning('OffsetStatsHook: the model has no DeformableConv2d; '
                                      'nothing to record')
                self._warned = True
            return
        self._remove_hooks()
        self._stats = {name: OffsetStats() for name, _ in layers}
        for name, layer in layers:
            self._handles.append(layer.offset_head.register_forward_hook(self._recorder(name)))

    def _recorder(self, name: str):
        stats = self._stats[name]

        def record(head, inputs, output):
            offset, mask = output
            stats.update(offset, mask, head, inputs[0].shape[-2:])

        return record

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self._handles:
            return
        self._remove_hooks()
        summaries = {name: s.summary() for name, s in self._stats.items()}
        self._stats = {}
        scalars = {f'offset_stats/{name}/{key}': value
                   for name, summary in summaries.items() for key, value in summary.items()}
        if not scalars:
            return
        for key, value in scalars.items():
            runner.message_hub.update_scalar(key, value)
        runner.visualizer.add_scalars(scalars, step=runner.iter + 1)
        if self.log:
            runner.logger.info(format_offset_table(summaries, runner.iter + 1))

    def after_train(self, runner) -> None:
        # An interrupted logging iteration must not leave hooks collecting forever.
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def format_offset_table(summaries: Dict[str, Dict[str, float]], step: int) -> str:
    """The log text: one line per layer."""
    width = max(len(name) for name in summaries)
    lines = [f'Offset statistics at iter {step} (|offset| in px of the layer input; '
             'outside: sampling points off the input map):']
    for name, s in summaries.items():
        if not s:
            lines.append(f'  {name.ljust(width)}  (not called)')
            continue
        line = (f"  {name.ljust(width)}  mean {s['mean_px']:.4f}  max {s['max_px']:.4f}  "
                f"outside {100 * s['outside_frac']:.2f}%")
        if 'mask_mean' in s:
            line += f"  mask {s['mask_mean']:.4f}"
        lines.append(line)
    return '\n'.join(lines)
