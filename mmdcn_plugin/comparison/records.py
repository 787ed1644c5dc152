"""What a finished training run says about itself: its validation curve, its
seconds per iteration, and whether it converged.

Everything here reads MMEngine's ``vis_data/scalars.json`` of every session of a work
dir (a resumed run has several), through :func:`mmdcn_plugin.study.records.read_scalars`;
the validation curve and seconds per iteration are the study's own functions, so the
demo and the study read a log by one rule (a validation without any COCO metric, a
model that detected nothing, is an mAP of 0).
"""
from typing import Dict, Sequence

from ..study.records import seconds_per_iter, val_curve  # one rule for the demo and the study

__all__ = ['val_curve', 'seconds_per_iter', 'convergence', 'CONVERGED_GAIN']

#: A run counts as converged when the validation bbox mAP gains less than this,
#: relative, over the last quarter of the schedule (the demo issue's definition).
CONVERGED_GAIN = 0.05
#: Where the last quarter starts, as a fraction of the schedule's steps.
LAST_QUARTER_START = 0.75
#: The fewest validations of a run that can count as converged: a curve of fewer
#: points has too few to show a flat end.
MIN_EVALUATIONS = 6


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
        ``start`` is 0 or missing) and ``converged`` (``evaluations >=``
        :data:`MIN_EVALUATIONS` and ``gain < threshold``).
    """
    quarter = LAST_QUARTER_START * max_step
    before = [p for p in curve if p[0] <= quarter]
    out = dict(evaluations=len(curve), start_step=None, start=None,
               final=curve[-1][1] if curve else None, gain=None, converged=False)
    if before and curve:
        out['start_step'], out['start'] = before[-1]
        if out['start'] > 0:
            out['gain'] = (out['final'] - out['start']) / out['start']
            out['converged'] = len(curve) >= MIN_EVALUATIONS and out['gain'] < threshold
    return out
