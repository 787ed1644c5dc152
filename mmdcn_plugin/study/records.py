"""What a training run's MMEngine logs say: its scalars, validation curve, s/iter.

Reads ``<work_dir>/<timestamp>/vis_data/scalars.json`` of every session of a work dir
(a resumed run has several).  ``read_scalars`` is also what
:mod:`mmdcn_plugin.comparison` reads its runs with.
"""
import json
import os
import os.path as osp
import statistics
from typing import List, Optional, Sequence, Tuple


OFFSET_PREFIX = 'offset_stats/'


def _records(work_dir: str):
    """Every record of every session of a run, oldest session first."""
    sessions = sorted(d for d in os.listdir(work_dir) if d[:1].isdigit()
                      and osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    for d in sessions:
        with open(osp.join(work_dir, d, 'vis_data', 'scalars.json')) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def _is_offset_record(rec: dict) -> bool:
    return any(k.startswith(OFFSET_PREFIX) for k in rec)


def read_scalars(work_dir: str) -> Tuple[List[dict], List[dict]]:
    """(training records, validation records) of every session of a run, oldest first.

    A validation record is one without ``loss`` and ``lr``; the records of
    :class:`~mmdcn_plugin.hooks.OffsetStatsHook` (``offset_stats/...`` keys and a step,
    nothing else) are neither (see :func:`read_offset_stats`).
    """
    train, val = [], []
    for rec in _records(work_dir):
        if 'loss' in rec:
            train.append(rec)
        elif 'lr' not in rec and not _is_offset_record(rec):
            val.append(rec)
    return train, val


def read_offset_stats(work_dir: str) -> Optional[dict]:
    """The last :class:`~mmdcn_plugin.hooks.OffsetStatsHook` record of a run:
    ``{'step': iteration, 'layers': {layer: {stat: value}}}`` (stats: ``mean_px``,
    ``max_px`` in px of the layer's input map, ``outside_frac``, DCNv2's ``mask_mean``);
    None when the run logged none (a plain-conv run).
    """
    last = None
    for rec in _records(work_dir):
        if _is_offset_record(rec):
            last = rec
    if last is None:
        return None
    layers = {}
    for key, value in last.items():
        if key.startswith(OFFSET_PREFIX):
            layer, stat = key[len(OFFSET_PREFIX):].rsplit('/', 1)
            layers.setdefault(layer, {})[stat] = round(float(value), 5)
    return dict(step=int(last.get('step', 0)), layers=layers)


def val_curve(val_records: Sequence[dict], key: str = 'coco/bbox_mAP') -> List[list]:
    """``[[step, value], ...]`` by step (epochs or iterations, as the loop counts); a
    validation that logged no COCO metric (no detections at all) counts as 0."""
    points = {int(r['step']): float(r.get(key, 0.0)) for r in val_records if 'step' in r}
    return [[s, v] for s, v in sorted(points.items())]


def seconds_per_iter(train_records: Sequence[dict], skip: int = 2) -> Optional[float]:
    """Median of the logged ``time`` (s/iteration, data time included), leaving out the
    first ``skip`` records (warm-up) when there are more."""
    times = [float(r['time']) for r in train_records if 'time' in r]
    times = times[skip:] if len(times) > skip else times
    return statistics.median(times) if times else None


def final_metrics(val_records: Sequence[dict], metrics: Sequence[str]) -> dict:
    """The last validation's ``coco/<metric>`` values, keyed by metric.

    MMDetection's CocoMetric logs no metric at all when the model detects nothing (an
    early, weak run can): that is an mAP of 0, recorded as such with
    ``no_detections=True``.
    """
    final = val_records[-1]
    none = not any(k.startswith('coco/') for k in final)
    out = {m: float(final.get(f'coco/{m}', 0.0 if none else float('nan'))) for m in metrics}
    return dict(out, no_detections=none)
