"""What a finished training run says about itself: its validation curve, its
seconds per iteration, and whether it converged.

Everything here reads MMEngine's ``vis_data/scalars.json`` of every session of a work
dir (a resumed run has several), through :func:`mmdcn_plugin.study.grid.read_scalars`.
"""
from typing import Dict, List, Sequence

from ..study.records import seconds_per_iter  # one rule for the demo and the study

__all__ = ['val_curve', 'seconds_per_iter', 'convergence', 'CONVERGED_GAIN']

#: A run counts as converged when the validation bbox mAP gains less than this,
#: relative, over the last quarter of the schedule (the demo issue's definition).
CONVERGED_GAIN = 0.05


def val_curve(val_records: Sequence[dict], key: str = 'coco/bbox_mAP') -> List[tuple]:
    """``[(step, value), ...]`` of the validation records holding ``key``, by step."""
    points = {int(r['step']): float(r[key]) for r in val_records if key in r}
    return sorted(points.items())


def convergence(curve: Sequence[tuple], max_step: int,
                threshold: float = CONVERGED_GAIN) -> Dict:
    """Relative gain of the last value over the value at three quarters of the schedule.

    Args:
        curve: ``[(step, value), ...]`` sorted by step (:func:`val_curve`).
        max_step: The schedule's last step.
        threshold: The largest relative gain that still counts as converged.

    Returns:
        dict: ``evaluations`` (count), ``start_step`` and ``start`` (the last value at or
        before 3/4 of ``max_step``), ``final``, ``gain`` (relative; ``None`` when
        ``start`` is 0 or missing) and ``converged`` (``evaluations >= 6`` and ``gain <
        threshold``).
    """
    quarter = 0.75 * max_step
    before = [p for p in curve if p[0] <= quarter]
    out = dict(evaluations=len(curve), start_step=None, start=None,
               final=curve[-1][1] if curve else None, gain=None, converged=False)
    if before and curve:
        out['start_step'], out['start'] = before[-1]
        if out['start'] > 0:
            out['gain'] = (out['final'] - out['start']) / out['start']
            out['converged'] = len(curve) >= 6 and out['gain'] < threshold
    return out
