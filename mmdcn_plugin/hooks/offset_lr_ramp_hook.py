"""OffsetLrRampHook: the offset heads' learning rate held at 0, then ramped to the full rate.

A zero-initialised offset head trained at the detector's full rate from the first
iteration jitters while the rest of the detector is still far from any solution, and
the quick-start DCNv2 stalled (``docs/recipe/``, row H).  The recipe so far trains the
heads at a tenth of the rate (``lr_mult=0.1``), and their offsets then hardly move
(0.1-0.3 px).  This hook lets the heads reach the full rate once the detector has
learned something: their learning rate is multiplied by

    ramp(i) = 0                               for i < delay
            = min(1, (i - delay + 1) / warmup) after that     (i: the iteration)

on top of whatever the parameter schedulers do to every group (warm-up, steps), and
of the heads' own ``lr_mult``.  The factor depends only on the iteration, so a resumed
run continues exactly.  Which parameters are the heads': every parameter whose name
contains ``key`` (``'offset_head'``, the name the deformable layers give their head,
the same key the optimiser's ``paramwise_cfg`` uses).
"""
from typing import List

from mmengine.hooks import Hook
from mmdet.registry import HOOKS


def ramp_factor(iteration: int, delay: int, warmup: int) -> float:
    """The multiplier of the heads' rate at ``iteration`` (0-based)."""
    if iteration < delay:
        return 0.0
    if warmup == 0:
        return 1.0
    return min(1.0, (iteration - delay + 1) / warmup)


def _non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'OffsetLrRampHook: {name} must be a non-negative int, got {value!r}')
    return value


@HOOKS.register_module()
class OffsetLrRampHook(Hook):
    """Hold the offset heads' learning rate at 0 for ``delay`` iterations, then ramp it
    linearly to the full rate over ``warmup`` iterations.

    Args:
        delay (int): iterations at rate 0 (the heads output the zero offsets they start
            with, so the deformable layers compute their plain convolution). Default: 0.
        warmup (int): iterations of the linear ramp after the delay. Default: 0.
        key (str): parameters whose name contains it are the heads'. Default:
            ``'offset_head'``.

    The rate set is ``group['initial_lr'] * s * ramp(i)`` for the heads' groups, where
    ``s = lr / initial_lr`` of a group that is not the heads' (what the schedulers have
    done so far).  It needs one parameter group per parameter, which MMEngine's
    optimiser constructor makes whenever ``paramwise_cfg`` is set.

    Raises:
        ValueError: a bad argument; or, at the start of training, no parameter matches
            ``key``, or the heads share a parameter group with other parameters.
    """

    priority = 'LOW'   # after ParamSchedulerHook's steps, before the next forward

    def __init__(self, delay: int = 0, warmup: int = 0, key: str = 'offset_head'):
        self.delay = _non_negative_int(delay, 'delay')
        self.warmup = _non_negative_int(warmup, 'warmup')
        if not isinstance(key, str) or not key:
            raise ValueError(f'OffsetLrRampHook: key must be a non-empty str, got {key!r}')
        self.key = key
        self._heads: List[dict] = []
        self._reference = None

    def before_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        heads = {id(p) for name, p in model.named_parameters() if self.key in name}
        if not heads:
            raise ValueError(f'OffsetLrRampHook: no parameter name contains key={self.key!r}; '
                             'expected a model with deformable layers (their heads are '
                             "named 'offset_head')")
        self._heads, others = [], []
        for group in runner.optim_wrapper.optimizer.param_groups:
            # The schedulers record it when built (and a resumed optimiser brings it
            # back); without schedulers the rate found now is the base.
            group.setdefault('initial_lr', group['lr'])
            ids = {id(p) for p in group['params']}
            if ids & heads and ids - heads:
                raise ValueError('OffsetLrRampHook: expected the offset heads in parameter '
                                 'groups of their own, got a group that mixes them with '
                                 'other parameters; set optim_wrapper.paramwise_cfg (e.g. '
                                 f"custom_keys={{'{self.key}': dict(lr_mult=1.0)}})")
            (self._heads if ids & heads else others).append(group)
        self._reference = others[0] if others else None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        factor = ramp_factor(runner.iter, self.delay, self.warmup)
        ref = self._reference
        scale = 1.0 if ref is None or not ref['initial_lr'] else ref['lr'] / ref['initial_lr']
        for group in self._heads:
            group['lr'] = group['initial_lr'] * scale * factor
