"""One run's evaluation: the robustness sweeps and the on-object fractions of its checkpoint.

Run in a child process per run (``python -m mmdcn_plugin.study.sweep``, what
:func:`~.run.run_one` starts), so that ``--jobs`` runs evaluate side by side
with their own MMEngine state.  The work is :mod:`mmdcn_plugin.robustness`'s: the COCO
metric on transformed val splits (:func:`~mmdcn_plugin.robustness.robustness_sweep`)
and where the offsets go (:func:`~mmdcn_plugin.robustness.on_object_by_value`).
The transformed splits are written once, before any run, by :func:`prepare_splits`
(runs evaluating side by side must not write the same cache).
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, Optional, Sequence

#: What a sweep row keeps of the robustness package's rows.
ROW_KEYS = ('value', 'bbox_mAP', 'mAP50', 'mAP75', 'bbox_mAP_s', 'bbox_mAP_m', 'n_instances')


def prepare_splits(cfg, sweeps: Dict[str, Sequence[float]], cache_dir: str) -> int:
    """Write (or find cached) the test split of ``cfg`` (a Config) transformed by every
    sweep value; the number of splits."""
    from ..robustness import source_split, split_name, write_transformed_split
    ann_file, img_dir = source_split(cfg)
    count = 0
    for transform, values in sweeps.items():
        for value in values:
            write_transformed_split(ann_file, img_dir, transform, value,
                                    osp.join(cache_dir, split_name(transform, value)),
                                    progress=False)
            count += 1
    return count


def evaluate_run(config: str, checkpoint: str, sweeps: Dict[str, Sequence[float]],
                 cache_dir: str, work_dir: str, on_object_images: Optional[int] = None) -> dict:
    """The sweeps (and, with ``on_object_images``, the on-object fractions) of a checkpoint.

    Args:
        config (str): the run's config (its test split is the study's val split).
        sweeps (dict): transform -> values, e.g. :data:`~.constants.SWEEPS`.
        cache_dir (str): the transformed splits (:func:`prepare_splits`).
        on_object_images (int or None): measure the on-object fractions over the
            rotation sweep on this many val images (the model must be deformable).

    Returns:
        dict: ``sweeps`` (transform -> list of rows with :data:`ROW_KEYS`) and
        ``on_object`` (list of ``value, stage, instances, points, deformable,
        regular`` rows, or None).
    """
    from ..robustness import (evaluate_on_splits, load_config, metrics_row, on_object_by_value,
                              parse_values, source_split, split_name, write_transformed_split)
    from .progress import log
    cfg = load_config(config)
    ann_file, img_dir = source_split(cfg)
    # Every split of every transform through one Runner: one model build and one
    # checkpoint load per run, not one per transform.
    items = []
    for transform, values in sweeps.items():
        for value in parse_values(transform, list(values)):
            items.append((transform, value, write_transformed_split(
                ann_file, img_dir, transform, value,
                osp.join(cache_dir, split_name(transform, value)), progress=False)))
    out = dict(sweeps={transform: [] for transform in sweeps}, on_object=None)
    runs = evaluate_on_splits(cfg, checkpoint, [split for _, _, split in items],
                              osp.join(work_dir, 'robustness'), 'study_sweep')
    tic = time.time()
    for (transform, value, split), metrics in zip(items, runs):
        row = metrics_row(value, split, metrics)
        out['sweeps'][transform].append({k: row[k] for k in ROW_KEYS})
        log(f'{transform}={value:g}: bbox_mAP {row["bbox_mAP"]:.3f}, mAP50 {row["mAP50"]:.3f} '
            f'({time.time() - tic:.1f} s)')
        tic = time.time()
    if on_object_images:
        from ..visualization import init_model
        model = init_model(config, checkpoint)
        out['on_object'] = on_object_by_value(model, ann_file, img_dir, 'rotate',
                                              list(sweeps['rotate']), cache_dir,
                                              max_images=on_object_images)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Evaluate one study run (internal).')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--sweeps', required=True, help='JSON: {transform: [values]}')
    parser.add_argument('--cache-dir', required=True)
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--on-object-images', type=int, default=0)
    parser.add_argument('--out', required=True, help='the JSON written')
    args = parser.parse_args(argv)
    result = evaluate_run(args.config, args.checkpoint, json.loads(args.sweeps),
                          args.cache_dir, args.work_dir, args.on_object_images)
    with open(args.out + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(args.out + '.tmp', args.out)


if __name__ == '__main__':
    main()
