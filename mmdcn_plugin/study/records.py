"""What a training run's MMEngine logs say: its scalars, validation curve, s/iter.

Reads ``<work_dir>/<timestamp>/vis_data/scalars.json`` of every session of a work dir
(a resumed run has several).  ``read_scalars`` is also what
:mod:`mmdcn_plugin.comparison` reads its runs with (through ``study.grid``).
"""
import json
import os
import os.path as osp
import statistics
from typing import List, Optional, Sequence, Tuple


def read_scalars(work_dir: str) -> Tuple[List[dict], List[dict]]:
    """(training records, validation records) of every session of a run, oldest first."""
    train, val = [], []
    sessions = sorted(d for d in os.listdir(work_dir) if d[:1].isdigit()
                      and osp.isfile(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    for d in sessions:
        with open(osp.join(work_dir, d, 'vis_data', 'scalars.json')) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                if 'loss' in rec:
                    train.append(rec)
                elif 'lr' not in rec:   # a validation record
                    val.append(rec)
    return train, val


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
