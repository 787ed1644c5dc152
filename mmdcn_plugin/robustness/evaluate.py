"""The robustness sweep: MMDetection's COCO metric on transformed copies of the test split.

For each value, :func:`robustness_sweep` writes the config's test split transformed by
that value (:func:`~mmdcn_plugin.robustness.split.write_transformed_split`, cached),
points the test dataloader and the ``CocoMetric`` at it, and runs MMEngine's test loop
(``Runner.from_cfg(cfg).test()``, as mmdet's ``tools/test.py`` and
``tools/analysis_tools/test_robustness.py`` do) once per checkpoint.  Unlike mmdet's
corruption benchmark, which adds a ``Corrupt`` step to the test pipeline, a geometric
transform changes the ground truth too, so the evaluator needs its own annotation file.

Outputs in ``out_dir``: ``robustness_<transform>.csv`` (``value, bbox_mAP, mAP50, mAP75,
n_instances``; a leading ``checkpoint`` column with several checkpoints),
``robustness_<transform>.png`` (bbox mAP against the value, one line per checkpoint),
``robustness_<transform>.json`` (the same rows and how they were made), ``data/`` (the
transformed splits) and ``work/`` (the test runs' logs).
"""
import contextlib
import copy
import csv
import datetime
import io
import json
import os
import os.path as osp
import sys
import time
from typing import Iterator, List, Optional, Sequence

from mmengine.hooks import Hook

from ..apis import load_config
from .split import split_name, write_transformed_split
from .transforms import FILL, MIN_VISIBLE, check_fill, check_transform, parse_values

CSV_COLUMNS = ('value', 'bbox_mAP', 'mAP50', 'mAP75', 'n_instances')
# CSV column -> the key in the metrics that MMDetection's CocoMetric returns.
METRIC_KEYS = {'bbox_mAP': 'coco/bbox_mAP', 'mAP50': 'coco/bbox_mAP_50',
               'mAP75': 'coco/bbox_mAP_75'}


def log(msg: str) -> None:
    print(f'[robustness {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def _joined(data_root: str, path: str) -> str:
    # What mmengine's BaseDataset does with data_root and relative paths.
    return path if (not data_root or osp.isabs(path)) else osp.join(data_root, path)


def source_split(cfg) -> tuple:
    """``(ann_file, img_dir)`` of ``cfg.test_dataloader.dataset``, resolved as mmengine does.

    Raises:
        ValueError: the test dataset is a wrapper or has no ``ann_file``.
    """
    dataset = (cfg.get('test_dataloader') or {}).get('dataset')
    if not dataset or not dataset.get('ann_file'):
        raise ValueError('config: test_dataloader.dataset must be a COCO-style dataset with '
                         f'an ann_file; got {dataset!r:.200}')
    data_root = dataset.get('data_root') or ''
    img = (dataset.get('data_prefix') or {}).get('img', '')
    return _joined(data_root, dataset.ann_file), _joined(data_root, img)


def _coco_metrics(evaluator) -> list:
    items = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    found = [e for e in items if isinstance(e, dict) and 'CocoMetric' in str(e.get('type', ''))]
    for e in found:
        metric = e.get('metric', 'bbox')
        if 'bbox' not in ([metric] if isinstance(metric, str) else list(metric)):
            raise ValueError(f"config: test_evaluator's CocoMetric must compute metric "
                             f"'bbox'; got metric={metric!r}")
    if not found:
        raise ValueError('config: test_evaluator must hold MMDetection\'s CocoMetric '
                         f"(type='CocoMetric'); got {evaluator!r:.200}")
    return found


def point_at_split(cfg, split: dict):
    """A copy of ``cfg`` whose test dataset and CocoMetric read ``split``.

    Args:
        split (dict): ``data_root``, ``ann_file`` (absolute) and ``img_dir``, as returned
            by :func:`~mmdcn_plugin.robustness.split.write_transformed_split`.
    """
    cfg = copy.deepcopy(cfg)
    dataset = cfg.test_dataloader.dataset
    dataset.data_root = ''
    dataset.ann_file = split['ann_file']
    dataset.data_prefix = dict(dataset.get('data_prefix') or {}, img=split['img_dir'])
    for metric in _coco_metrics(cfg.test_evaluator):
        metric['ann_file'] = split['ann_file']
    return cfg


def _build_runner(cfg, checkpoint: str, work_dir: str, name: str, verbose: bool):
    from mmengine.runner import Runner
    from mmdet.registry import RUNNERS
    import mmdcn_plugin  # noqa: F401  (layers registered; checkpoints load under torch >= 2.6)

    _coco_metrics(cfg.test_evaluator)
    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.launcher = 'none'
    cfg.work_dir = work_dir
    # MMEngine keeps one logger and one visualizer per name: runs in one process must
    # not share them.
    cfg.experiment_name = name
    if cfg.get('visualizer'):
        cfg.visualizer.name = name
    if not verbose:
        cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


class _TestProgress(Hook):
    """``<split>: i/n test batches`` about ten times per run (MMEngine's own lines are off)."""

    priority = 'VERY_LOW'

    def __init__(self):
        self.label = ''

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        total = len(runner.test_loop.dataloader)
        if (batch_idx + 1) % max(1, total // 10) == 0 or batch_idx + 1 == total:
            log(f'{self.label}: {batch_idx + 1}/{total} test batches')


def _quiet(verbose: bool):
    """pycocotools prints its summary table on stdout: keep it only when verbose."""
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def evaluate_on_splits(cfg, checkpoint: str, splits: Sequence[dict], work_dir: str, name: str,
                       verbose: bool = False) -> Iterator[dict]:
    """Yield the test loop's metrics for ``checkpoint`` on each split, in order.

    One Runner (one model build, one checkpoint load) serves every split: as in mmdet's
    ``test_robustness.py``, the test loop's dataloader is replaced between runs, and so
    is its evaluator, whose CocoMetric reads the split's own annotation file.  The first
    split runs through ``runner.test()`` (hooks' ``before_run``, checkpoint loading);
    the others through ``runner.test_loop.run()`` alone, because ``before_run`` formats
    the whole config again each time (seconds per call, measured).

    Args:
        cfg (Config): the config (test dataloader and CocoMetric as in the file).
        splits (sequence of dict): from
            :func:`~mmdcn_plugin.robustness.split.write_transformed_split`.
        name (str): the run's experiment and visualizer name (unique in the process).
    """
    runner = _build_runner(point_at_split(cfg, splits[0]), checkpoint, work_dir, name, verbose)
    progress = _TestProgress()
    if not verbose:
        runner.register_hook(progress)
    for i, split in enumerate(splits):
        progress.label = osp.basename(osp.normpath(split['data_root']))
        with _quiet(verbose):
            if i == 0:
                metrics = runner.test()
            else:
                run_cfg = point_at_split(cfg, split)
                loop = runner.test_loop
                loop.dataloader = runner.build_dataloader(run_cfg.test_dataloader)
                loop.evaluator = runner.build_evaluator(run_cfg.test_evaluator)
                loop.evaluator.dataset_meta = loop.dataloader.dataset.metainfo
                metrics = loop.run()
        yield metrics


def checkpoint_labels(checkpoints: Sequence[str]) -> List[str]:
    """The shortest path suffixes that tell the checkpoints apart (``a/epoch_12.pth``)."""
    parts = [osp.normpath(osp.abspath(c)).split(os.sep) for c in checkpoints]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ['/'.join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ValueError(f'checkpoints must be distinct files, got {list(checkpoints)}')


def _check_checkpoints(checkpoints) -> List[str]:
    if isinstance(checkpoints, str):
        checkpoints = [checkpoints]
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError('checkpoints must name at least one checkpoint file, got none')
    seen = set()
    for c in checkpoints:
        if not osp.isfile(c):
            raise FileNotFoundError(f'checkpoint {c!r} does not exist')
        if osp.realpath(c) in seen:
            raise ValueError(f'checkpoints must be distinct, got {c!r} twice')
        seen.add(osp.realpath(c))
    return checkpoints


def write_csv(rows: Sequence[dict], path: str, with_checkpoint: bool) -> None:
    columns = (('checkpoint',) if with_checkpoint else ()) + CSV_COLUMNS
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, columns, extrasaction='ignore', lineterminator='\n')
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f'{row[k]:g}' if k == 'value' else row[k]) for k in columns})


def metrics_row(value: float, split: dict, metrics: dict) -> dict:
    """One row of a sweep: ``value``, the CSV's metrics, ``n_instances`` and
    ``bbox_mAP_s/m/l`` (-1 where COCO has no instance of that size).

    Args:
        split (dict): the split the metrics are of (for its ``n_instances``).
        metrics (dict): what the test loop returned on it.

    Raises:
        RuntimeError: the metrics lack the bbox keys (the CocoMetric computes no bbox).
    """
    missing = [key for key in METRIC_KEYS.values() if key not in metrics]
    if missing:
        raise RuntimeError(f'the test loop returned no {missing} (got {sorted(metrics)}): '
                           'is the CocoMetric computing bbox?')
    row = dict(value=value, n_instances=split['n_instances'],
               **{col: float(metrics[key]) for col, key in METRIC_KEYS.items()})
    for size in 'sml':
        row[f'bbox_mAP_{size}'] = float(metrics.get(f'coco/bbox_mAP_{size}', -1))
    return row


def robustness_sweep(config: str, checkpoints: Sequence[str], transform: str, values,
                     out_dir: str, cfg_options: Optional[dict] = None,
                     min_visible: float = MIN_VISIBLE, fill=FILL, cache_dir: Optional[str] = None,
                     verbose: bool = False, plot: bool = True) -> dict:
    """Evaluate each checkpoint on the test split transformed by each value.

    Args:
        config (str): the MMDetection config (its test dataloader and CocoMetric are used).
        checkpoints (str or sequence of str): checkpoint files.
        transform (str): ``'rotate'``, ``'scale'`` or ``'shear'``.
        values (str or sequence of float): ``'0,30,60'`` or numbers; see
            :func:`~mmdcn_plugin.robustness.transforms.check_value` for the ranges.
        out_dir (str): where the CSV, plot, JSON, splits and logs go.
        cfg_options (dict or None): ``key=value`` overrides merged into the config.
        min_visible (float), fill: the rule and the fill of
            :mod:`mmdcn_plugin.robustness.transforms`.
        cache_dir (str or None): the transformed splits (default ``out_dir/data``).
        verbose (bool): keep MMEngine's INFO logs (config dump, per-iteration lines).
        plot (bool): draw the PNG (needs matplotlib).

    Returns:
        dict: ``rows`` (list of dicts with ``checkpoint``, the CSV columns and
        ``bbox_mAP_s/m/l``), ``csv``, ``json`` and ``plot`` (paths; ``plot`` None when
        not drawn).
    """
    check_transform(transform)
    values = parse_values(transform, values)
    checkpoints = _check_checkpoints(checkpoints)
    if not 0 <= min_visible <= 1:
        raise ValueError(f'min_visible must be in [0, 1], got {min_visible!r}')
    check_fill(fill)
    cfg = load_config(config, cfg_options)
    ann_file, img_dir = source_split(cfg)
    labels = checkpoint_labels(checkpoints)
    cache_dir = cache_dir or osp.join(out_dir, 'data')
    os.makedirs(out_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime('%Y%m%d_%H%M%S_%f')
    start = time.time()
    splits = []
    for i, value in enumerate(values):
        log(f'{transform}={value:g} ({i + 1}/{len(values)}): preparing the transformed split')
        split = write_transformed_split(ann_file, img_dir, transform, value,
                                        osp.join(cache_dir, split_name(transform, value)),
                                        min_visible, fill)
        log(f'{transform}={value:g}: {split["num_images"]} images, {split["n_instances"]} '
            f'instances, {split["n_ignored"]} ignore regions'
            + (' (cached)' if split['cached'] else ''))
        splits.append(split)
    rows = []
    for k, (ckpt, label) in enumerate(zip(checkpoints, labels)):
        log(f'checkpoint {k + 1}/{len(checkpoints)} ({label}): {len(values)} test runs')
        tic = time.time()
        runs = evaluate_on_splits(cfg, ckpt, splits, osp.join(out_dir, 'work', str(k)),
                                  f'robustness_{stamp}_{k}', verbose)
        for value, split, metrics in zip(values, splits, runs):
            row = dict(checkpoint=label, **metrics_row(value, split, metrics))
            rows.append(row)
            log(f'checkpoint {k + 1}/{len(checkpoints)}, {transform}={value:g}: bbox_mAP '
                f'{row["bbox_mAP"]:.3f}, mAP50 {row["mAP50"]:.3f} ({time.time() - tic:.1f} s)')
            tic = time.time()

    rows.sort(key=lambda r: (labels.index(r['checkpoint']), values.index(r['value'])))
    base = osp.join(out_dir, f'robustness_{transform}')
    write_csv(rows, base + '.csv', with_checkpoint=len(checkpoints) > 1)
    with open(base + '.json', 'w') as f:
        json.dump(dict(config=osp.abspath(config),
                       checkpoints=[osp.abspath(c) for c in checkpoints],
                       labels=labels, transform=transform, values=values,
                       cfg_options=cfg_options or {}, min_visible=min_visible,
                       fill=fill, test_ann_file=osp.abspath(ann_file),
                       date=datetime.datetime.now().isoformat(timespec='seconds'),
                       wall_time_s=round(time.time() - start, 1), rows=rows), f, indent=1)
    plot_path = None
    if plot:
        from .plot import plot_sweep
        plot_path = base + '.png'
        plot_sweep(rows, transform, title=osp.basename(config)).savefig(plot_path, dpi=100)
    log(f'wrote {base}.csv' + (f' and {plot_path}' if plot_path else ''))
    return dict(rows=rows, csv=base + '.csv', json=base + '.json', plot=plot_path)
