"""``make demo``: plain vs deformable convolution, end to end on the embedded dataset.

What ``tools/demo.py`` runs (the steps are in its docstring).  Training and evaluation are
MMDetection's own ``train.py`` and ``test.py`` in child processes, run through the package
(``python -m mmdcn_plugin.engine.mmdet_tools train|test``, what ``tools/train.py`` and
``tools/test.py`` run), so nothing is taken from the checkout's ``tools/``; the two
detectors are the checkout's quick-start configs.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..engine.mmdet_tools import tool_command
from ..utils import last_checkpoint
from .figures import detections_side_by_side, plot_curves
from .records import CONVERGED_GAIN, convergence, seconds_per_iter, val_curve
from .table import format_table

__all__ = ['MODELS', 'run_demo']

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart')
#: (row name, work-dir name, config) of the two detectors; the baseline first.
MODELS = (
    ('plain conv', 'plain', osp.join(_QUICKSTART, 'faster-rcnn_r50-narrow_fpn_synthetic.py')),
    ('DCNv2', 'dcnv2',
     osp.join(_QUICKSTART, 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')),
)
#: Progress lines of the child processes that the demo shows.
_SHOWN = ('Iter(', 'Epoch(', 'bbox_mAP', 'Traceback', 'Error:', 'generating', 'wrote',
          'Saving', 'Resuming', 'resumed')


def step(msg: str) -> None:
    print(f'\n==> {msg}', flush=True)


def _show(label: str, line: str) -> None:
    print(f'   {label}{line}', end='' if line.endswith('\n') else '\n', flush=True)


def run_chains(chains: Sequence[Tuple[str, Sequence]], threads: Optional[int] = None
               ) -> List[List[str]]:
    """Run the chains side by side; in a chain, ``python ARGS`` of each command in turn.

    Shows each child's progress lines (prefixed with ``[label]`` when there are several
    chains) and returns, per chain, each command's whole output.  A command is a list of
    arguments, or a callable returning one when its turn comes (e.g. a test of the
    checkpoint that the chain's training writes).  When a command fails, its chain
    stops and the others are left to finish (their checkpoints count for a resumed
    demo); then the demo stops with the failed one's output.

    Args:
        chains: ``(label, commands)`` pairs.
        threads: ``OMP_NUM_THREADS`` of each child, unless the caller's environment sets
            it; ``None`` leaves the children's default.
    """
    env = dict(os.environ)
    if threads is not None:
        env.setdefault('OMP_NUM_THREADS', str(threads))
        env.setdefault('MKL_NUM_THREADS', env['OMP_NUM_THREADS'])
    outputs = [[] for _ in chains]
    failed = []

    def run(i, label, commands):
        prefix = f'[{label}] ' if len(chains) > 1 else ''
        for command in commands:
            args = command() if callable(command) else command
            _show(prefix, '$ ' + ' '.join(osp.relpath(a, REPO_ROOT) if osp.isabs(a) else a
                                          for a in args))
            child = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
            lines = []
            for line in child.stdout:
                lines.append(line)
                if any(key in line for key in _SHOWN):
                    _show(prefix, line)
            child.wait()
            outputs[i].append(''.join(lines))
            if child.returncode != 0:
                failed.append((args, child.returncode, lines))
                return

    workers = [threading.Thread(target=run, args=(i, label, commands), daemon=True)
               for i, (label, commands) in enumerate(chains)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failed:
        args, code, lines = failed[0]
        sys.stdout.write(''.join(lines[-60:]))
        raise SystemExit(f'demo step failed (exit {code}): {" ".join(args)}')
    return outputs


def ensure_dataset(data_root: str, num_train: int, num_val: int, image_size: int) -> None:
    """Generate the embedded dataset unless ``data_root`` holds it with these sizes."""
    from ..synthetic import ensure_synthetic_coco
    ensure_synthetic_coco(data_root, num_train, num_val, image_size, log=step)


def _done(work_dir: str) -> Optional[Dict]:
    """The saved test result of a detector that was trained and evaluated, else None."""
    done = osp.join(work_dir, 'test_metrics.json')
    if osp.isfile(done) and osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        with open(done) as f:
            return json.load(f)
    return None


def check_recipe(work_dir: str, recipe: Dict) -> None:
    """Stamp ``work_dir`` with ``recipe`` (``recipe.json``), or check that its training,
    if any, had that recipe: a demo resumed with other weights, configs or options would
    mix two recipes in one model, or report a model of the old one.

    Raises:
        SystemExit: ``work_dir`` holds a checkpoint of another (or an unrecorded) recipe.
    """
    path = osp.join(work_dir, 'recipe.json')
    found = None
    if osp.isfile(path):
        with open(path) as f:
            found = json.load(f)
    if found == recipe:
        return
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        raise SystemExit(f'{work_dir} holds a training of another recipe: expected {recipe}, '
                         f'found {found or "no recipe.json"}. Remove the folder to train '
                         'again with the current recipe, or give another --work-dir')
    os.makedirs(work_dir, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(recipe, f, indent=1)


def _checkpoint_of(work_dir: str) -> str:
    """The checkpoint a training wrote last (``work_dir/last_checkpoint``)."""
    ckpt = last_checkpoint(work_dir)
    if ckpt is None:
        raise SystemExit(f'{work_dir}: the training wrote no checkpoint (no last_checkpoint '
                         'naming an existing file)')
    return ckpt


def _tool(name: str, *args: str) -> List[str]:
    """``python ARGS`` of mmdet's ``name`` tool through the package (see :func:`run_chains`)."""
    return tool_command(name, *args)[1:]


def _test_args(config: str, work_dir: str, overrides: List[str]) -> List[str]:
    return _tool('test', config, _checkpoint_of(work_dir), '--work-dir',
                 osp.join(work_dir, 'test'), *overrides)


def _save_test(name: str, work_dir: str, out: str) -> Dict:
    """Parse ``tools/test.py``'s output; ``{'metrics': ..., 'checkpoint': ...}``, saved as
    ``test_metrics.json`` (what :func:`_done` reads)."""
    metrics = {k: float(v) for k, v in re.findall(r'coco/(bbox_mAP\w*): (-?[0-9.]+)', out)}
    if 'bbox_mAP' not in metrics:
        raise SystemExit(f'{name}: tools/test.py printed no coco/bbox_mAP; its output ends '
                         f'with:\n{out[-2000:]}')
    result = dict(metrics=metrics, checkpoint=_checkpoint_of(work_dir))
    with open(osp.join(work_dir, 'test_metrics.json'), 'w') as f:
        json.dump(result, f, indent=1)
    return result


def train_and_test(models: Sequence[Tuple[str, str, str]], overrides: List[str],
                   at_once: int) -> Dict[str, Dict]:
    """Train (resuming) each ``(name, config, work_dir)`` detector, then evaluate its last
    checkpoint with ``tools/test.py``; ``at_once`` detectors at a time, the machine's
    cores shared evenly.  A detector's test starts as soon as its own training ends.

    Returns:
        dict: name -> ``{'metrics': ..., 'checkpoint': ...}``.
    """
    threads = max(1, (os.cpu_count() or 1) // at_once)
    results = {}
    for i in range(0, len(models), at_once):
        group = models[i:i + at_once]
        names = ' and '.join(name for name, _, _ in group)
        step(f'training {names}'
             + (f' at once, {threads} thread(s) each' if len(group) > 1 else '')
             + ' (each resumes from its work dir if it holds a checkpoint), then testing '
             'each last checkpoint with tools/test.py (COCO metric)')
        chains = [(name, [_tool('train', config, '--work-dir', work_dir, '--resume',
                                *overrides),
                          lambda c=config, w=work_dir: _test_args(c, w, overrides)])
                  for name, config, work_dir in group]
        for (name, _, work_dir), (_, test_out) in zip(group, run_chains(chains, threads)):
            results[name] = _save_test(name, work_dir, test_out)
    return results


def _val_images(data_root: str, count: int):
    """The first ``count`` val images (by id): their paths and ground-truth boxes
    (``{path: ndarray[K, 4]}``, x1y1x2y2)."""
    with open(osp.join(data_root, 'annotations', 'val.json')) as f:
        coco = json.load(f)
    images = sorted(coco['images'], key=lambda im: im['id'])[:count]
    paths = [osp.join(data_root, 'images', 'val', im['file_name']) for im in images]
    gt = {}
    for im, path in zip(images, paths):
        boxes = [a['bbox'] for a in coco['annotations'] if a['image_id'] == im['id']]
        gt[path] = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes]).reshape(-1, 4)
    return paths, gt


def offset_pictures(model, image_path: str, checkpoint: str, out_dir: str) -> List[str]:
    """What ``tools/visualize_offsets.py IMAGE --checkpoint CKPT`` draws for the trained
    DCNv2 ``model``, in this process; the paths written."""
    from ..visualization import read_image, save_figures, visualize_offsets
    figures = visualize_offsets(model, read_image(image_path), detections=True,
                                note=f'checkpoint: {osp.basename(checkpoint)}')
    stem = osp.splitext(osp.basename(image_path))[0]
    return sorted(save_figures(figures, out_dir, prefix=f'{stem}_'))


def report_lines(rows: List[Dict], conv: Dict[str, Dict], unit: str) -> str:
    """The table, the convergence test of each detector, and the plain verdict."""
    lines = [format_table(rows), '']
    for name, c in conv.items():
        gain = 'n/a' if c['gain'] is None else f'{100 * c["gain"]:+.1f}%'
        lines.append(f'- {name}: {c["evaluations"]} evaluations; bbox mAP {c["start"]} at '
                     f'{unit} {c["start_step"]} -> {c["final"]} at the end ({gain} over the '
                     f'last quarter): {"converged" if c["converged"] else "NOT converged"} '
                     f'(below {100 * CONVERGED_GAIN:.0f}% counts as converged)')
    verdict = rows[1]['bbox_mAP'] - rows[0]['bbox_mAP']
    lines.append(f'- {rows[1]["model"]} {"beats" if verdict > 0 else "does not beat"} the '
                 f'plain-conv baseline here: {verdict:+.3f} bbox mAP (one seed).')
    return '\n'.join(lines)


def run_demo(data_root: str, work_dir: str, num_images: int = 4,
             cfg_options: Optional[List[str]] = None, at_once: int = 2) -> Dict:
    """The whole demo (see ``tools/demo.py``); returns what it writes to
    ``work_dir/results.json``.

    Args:
        data_root: Where the embedded dataset is (generated when missing or of other sizes).
        work_dir: Where both trainings, their tests, the pictures and the results go.
        num_images: Val images in the side-by-side detection picture (>= 1).
        cfg_options: ``key=value`` overrides for both trainings and tests, as
            ``--cfg-options`` of MMDetection's tools.
        at_once: Detectors trained at the same time (1 or 2), the cores shared between
            them.  On 2 cores two one-thread trainings finish together sooner than two
            two-thread trainings one after the other, as these small models use a
            second thread poorly.
    """
    from mmengine.config import Config, DictAction
    from ..analysis import detector_complexity_info
    from ..apis import build_model_from_config
    from ..pretrain import pretrained_digest
    from ..study.records import read_scalars
    if num_images < 1:
        raise ValueError(f'num_images: expected >= 1, got {num_images}')
    if at_once not in (1, 2):
        raise ValueError(f'at_once: expected 1 or 2, got {at_once!r}')
    start = time.time()
    cfg_options = list(cfg_options or [])
    cfg = Config.fromfile(MODELS[0][2])
    if cfg_options:
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--o', *cfg_options]).o)
    data_root = osp.abspath(data_root)
    ensure_dataset(data_root, cfg.num_train_images, cfg.num_val_images, cfg.image_size)
    overrides = ['--cfg-options',
                 *(f'{s}_dataloader.dataset.data_root={data_root}/'
                   for s in ('train', 'val', 'test')),
                 *(f'{s}_evaluator.ann_file={data_root}/annotations/val.json'
                   for s in ('val', 'test')),
                 *cfg_options]

    # Validation records are stepped by epoch under an epoch-based loop, else by iteration.
    by_epoch = 'max_epochs' in cfg.train_cfg
    max_step = cfg.train_cfg.max_epochs if by_epoch else cfg.train_cfg.max_iters
    dirs = {name: osp.join(work_dir, short) for name, short, _ in MODELS}
    for name, _, config in MODELS:
        check_recipe(dirs[name], dict(config=osp.relpath(config, REPO_ROOT),
                                      pretrained=pretrained_digest(Config.fromfile(config)),
                                      cfg_options=cfg_options))
    tested = {name: _done(dirs[name]) for name, _, _ in MODELS}
    for name, result in tested.items():
        if result is not None:
            step(f'{name}: already trained and evaluated ({dirs[name]})')
    tested.update(train_and_test([(name, config, dirs[name]) for name, _, config in MODELS
                                  if tested[name] is None], overrides, at_once))

    rows, curves, built, conv = [], {}, {}, {}
    for name, short, config in MODELS:
        model_dir, result = dirs[name], tested[name]
        train, val = read_scalars(model_dir)
        curve = val_curve(val)
        conv[name] = convergence(curve, max_step)
        curves[name] = {'bbox mAP': curve, 'mAP50': val_curve(val, 'coco/bbox_mAP_50')}
        model = build_model_from_config(config, result['checkpoint'])
        info = detector_complexity_info(model, (cfg.image_size, cfg.image_size))
        built[name] = (model, model.cfg)
        rows.append(dict(model=name, **result['metrics'], params_M=info['params'] / 1e6,
                         gflops=info['flops'] / 1e9, s_per_iter=seconds_per_iter(train),
                         checkpoint=result['checkpoint']))

    step('pictures')
    pictures = [plot_curves(curves, osp.join(work_dir, 'convergence.png'),
                            xlabel='epoch' if by_epoch else 'iteration')]
    paths, gt = _val_images(data_root, num_images)
    pictures.append(detections_side_by_side(
        built, paths, osp.join(work_dir, 'detections_side_by_side.png'),
        classes=cfg.classes, gt=gt))
    pictures += offset_pictures(built[MODELS[1][0]][0], paths[0], rows[1]['checkpoint'],
                                osp.join(work_dir, 'offsets'))

    report = report_lines(rows, conv, 'epoch' if by_epoch else 'iteration')
    wall = time.time() - start
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(report + f'\n\nwall time of this call: {wall:.0f} s\n')
    results = dict(rows=rows, convergence=conv, curves=curves, wall_s=wall,
                   pictures=pictures, trained_at_once=at_once)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    step(f'done in {wall:.0f} s (this call; a resumed demo counts only its own part)')
    print(report)
    for p in pictures:
        print(f'  picture: {osp.relpath(p, REPO_ROOT)}')
    print(f'  results: {osp.relpath(osp.join(work_dir, "results.md"), REPO_ROOT)}')
    return results
