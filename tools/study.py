"""The deformation study: does deformable convolution help, and which offset head?

    python tools/study.py            # the full grid (what `make study` runs)
    python tools/study.py --quick    # a 4-run smoke version (used by the tests)
    python tools/study.py --report-only   # rebuild the table and plot from finished runs

For every deformation level of the embedded dataset (``none``, ``moderate``,
``strong``; same image count and generator seed at every level) it trains every
variant of the quick-start Faster R-CNN — identical except for the 3x3 convs of
c3-c5 — with every training seed, on the same schedule, with ``tools/train.py``, and
reads MMDetection's COCO bbox metric on the val split from the final validation.

Resumable: a finished run leaves ``result.json`` in its folder and is never redone;
an interrupted run continues from its last checkpoint (``tools/train.py --resume``).
A failed run is reported with its log and the others go on.  Runs are ordered seed
first, so a study stopped early still covers every cell with the seeds it finished.

Outputs (``--docs-dir``, default ``docs/study``): ``results.md`` (the tables),
``results.csv`` (one row per run), ``summary.json`` and ``results.png`` (mAP against
deformation strength per variant, mean and std over seeds).
"""
import argparse
import concurrent.futures
import csv
import datetime
import json
import math
import os
import os.path as osp
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart')

# name -> (config in configs/quickstart, label for tables)
VARIANTS = {
    'baseline': ('faster-rcnn_r50-narrow_fpn_synthetic.py', 'plain conv (baseline)'),
    'dcnv1': ('faster-rcnn_r50-narrow-dcnv1-c3-c5_fpn_synthetic.py', 'DCNv1'),
    'dcnv2': ('faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py',
              'DCNv2, ConvOffsetHead'),
    'dcnv2-sep': ('faster-rcnn_r50-narrow-dcnv2-sep-c3-c5_fpn_synthetic.py',
                  'DCNv2, SeparableOffsetHead'),
    'dcnv2-sep-max4': ('faster-rcnn_r50-narrow-dcnv2-sep-max4-c3-c5_fpn_synthetic.py',
                       'DCNv2, SeparableOffsetHead, max_offset=4'),
}
LEVELS = ('none', 'moderate', 'strong')
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m')

# The grids.  `full` is what `make study` runs; its budget is stated in the README.
GRIDS = {
    'full': dict(levels=LEVELS, variants=tuple(VARIANTS), seeds=(0, 1, 2), num_train=200,
                 num_val=100, epochs=12, checkpoint_interval=4),
    'quick': dict(levels=('none', 'strong'), variants=('baseline', 'dcnv2'), seeds=(0,),
                  num_train=8, num_val=4, epochs=1, checkpoint_interval=1),
}
IMAGE_SIZE = 128  # the quick-start configs resize to 128 px


def log(msg):
    print(f'[study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='the smoke grid: 2 levels x 2 variants x 1 seed, 1 epoch of 8 '
                        'images (about a minute)')
    parser.add_argument('--out-dir', default=None,
                        help='runs and datasets (default: work_dirs/study, or '
                        'work_dirs/study-quick with --quick)')
    parser.add_argument('--docs-dir', default=None,
                        help='where the tables and the plot go (default: docs/study; with '
                        '--quick: OUT_DIR/report)')
    parser.add_argument('--levels', nargs='+', choices=LEVELS, default=None)
    parser.add_argument('--variants', nargs='+', choices=tuple(VARIANTS), default=None)
    parser.add_argument('--seeds', nargs='+', type=int, default=None)
    parser.add_argument('--epochs', type=int, default=None, help='training epochs per run')
    parser.add_argument('--num-train', type=int, default=None,
                        help='training images per level')
    parser.add_argument('--num-val', type=int, default=None, help='val images per level')
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs trained at the same time (default: 2)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads per run (default: cores // jobs, at least 1)')
    parser.add_argument('--report-only', action='store_true',
                        help='train nothing; rebuild the report from finished runs')
    args = parser.parse_args(argv)
    grid = dict(GRIDS['quick' if args.quick else 'full'])
    for key in ('levels', 'variants', 'seeds', 'epochs', 'num_train', 'num_val'):
        value = getattr(args, key)
        if value is not None:
            grid[key] = tuple(value) if isinstance(value, list) else value
    for key in ('epochs', 'num_train', 'num_val'):
        if grid[key] < 1:
            parser.error(f'--{key.replace("_", "-")} must be >= 1, got {grid[key]}')
    if any(s < 0 for s in grid['seeds']):
        parser.error(f'--seeds must be non-negative, got {list(grid["seeds"])}')
    if args.jobs < 1:
        parser.error(f'--jobs must be >= 1, got {args.jobs}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    args.grid = grid
    args.grid_name = 'quick' if args.quick else 'full'
    args.out_dir = osp.abspath(args.out_dir or osp.join(
        ROOT, 'work_dirs', 'study-quick' if args.quick else 'study'))
    args.docs_dir = osp.abspath(args.docs_dir or (
        osp.join(args.out_dir, 'report') if args.quick else osp.join(ROOT, 'docs', 'study')))
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    return args


# ------------------------------------------------------------------------ the runs
def milestones(epochs):
    """The quick-start's step schedule ([18, 22] of 24) scaled to ``epochs``."""
    return sorted({max(1, min(epochs, round(epochs * 0.75))),
                   max(1, min(epochs, round(epochs * 22 / 24)))})


def dataset_dir(out_dir, level):
    return osp.join(out_dir, 'data', level)


def ensure_dataset(out_dir, level, grid):
    """Generate the level's dataset once (generator seed 0 at every level)."""
    root = dataset_dir(out_dir, level)
    spec = dict(level=level, num_train=grid['num_train'], num_val=grid['num_val'], seed=0,
                image_size=IMAGE_SIZE)
    spec_file = osp.join(root, 'study_spec.json')
    if osp.isfile(spec_file):
        with open(spec_file) as f:
            found = json.load(f)
        if found == spec:
            return root
        raise SystemExit(f'study: {root} holds another dataset: expected {spec}, found '
                         f'{found}; remove it or use another --out-dir')
    log(f'generating the {level!r} dataset ({grid["num_train"]} train + {grid["num_val"]} '
        f'val images) into {root}')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_synthetic_coco.py'),
                    '--out-dir', root, '--num-train', str(grid['num_train']),
                    '--num-val', str(grid['num_val']), '--seed', '0', '--deformation', level,
                    '--image-size', str(IMAGE_SIZE), '--no-progress'], check=True)
    with open(spec_file, 'w') as f:
        json.dump(spec, f)
    return root


def train_overrides(data_root, grid, seed):
    epochs = grid['epochs']
    opts = [f'{split}_dataloader.dataset.data_root={data_root}/'
            for split in ('train', 'val', 'test')]
    opts += [f'{split}_evaluator.ann_file={data_root}/annotations/val.json'
             for split in ('val', 'test')]
    # One process per run and `--jobs` runs at once: no dataloader workers.
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    opts += [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
             f'param_scheduler.1.end={epochs}',
             'param_scheduler.1.milestones=[{}]'.format(','.join(map(str, milestones(epochs)))),
             f'randomness.seed={seed}',
             f'default_hooks.checkpoint.interval={grid["checkpoint_interval"]}',
             'default_hooks.checkpoint.max_keep_ckpts=1']
    return opts


def read_scalars(work_dir):
    """Training and validation records of every session of a run, oldest first."""
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


class Run:
    def __init__(self, out_dir, level, variant, seed):
        self.level, self.variant, self.seed = level, variant, seed
        self.dir = osp.join(out_dir, 'runs', level, variant, f'seed{seed}')
        self.result_file = osp.join(self.dir, 'result.json')

    @property
    def name(self):
        return f'{self.level}/{self.variant}/seed{self.seed}'

    def done(self):
        return osp.isfile(self.result_file)


def train_one(run, grid, data_root, threads, stop):
    """Train one run to the end; write and return its result (None on failure)."""
    os.makedirs(run.dir, exist_ok=True)
    config = osp.join(QUICKSTART, VARIANTS[run.variant][0])
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', run.dir,
           '--resume', '--cfg-options', *train_overrides(data_root, grid, run.seed)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log_file = osp.join(run.dir, 'train.log')
    start = time.time()
    with open(log_file, 'a') as out:
        out.write(f'\n$ {" ".join(cmd)}\n')
        out.flush()
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        stop.children.add(child.pid)
        try:
            # wait4: this child's own peak resident memory.
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            stop.children.discard(child.pid)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - start
    if child.returncode != 0:
        if not stop.is_set():
            with open(log_file) as f:
                tail = ''.join(f.readlines()[-25:])
            log(f'FAILED {run.name} (exit {child.returncode}); last lines of {log_file}:\n'
                f'{tail}')
        return None
    train, val = read_scalars(run.dir)
    if not val:
        log(f'FAILED {run.name}: training ended without a validation record ({log_file})')
        return None
    final = val[-1]
    # MMDetection's CocoMetric logs no metric at all when the model detects nothing
    # (an early, weak run can): that is an mAP of 0, recorded as such.
    no_detections = not any(k.startswith('coco/') for k in final)
    times = [r['time'] for r in train[1:] if 'time' in r] or [r['time'] for r in train]
    result = dict(
        level=run.level, variant=run.variant, seed=run.seed, config=VARIANTS[run.variant][0],
        epochs=grid['epochs'], num_train=grid['num_train'], num_val=grid['num_val'],
        iterations=max((r.get('iter', r.get('step', 0)) for r in train), default=0),
        train_iter_s=statistics.median(times) if times else None,
        peak_rss_mb=usage.ru_maxrss / 1024, wall_s=wall, threads=threads,
        no_detections=no_detections,
        **{m: final.get(f'coco/{m}', 0.0 if no_detections else None) for m in METRICS})
    with open(run.result_file + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(run.result_file + '.tmp', run.result_file)   # never a half-written result
    return result


class Stop(threading.Event):
    """Set on Ctrl-C/SIGTERM; the children (own sessions) are killed with it."""

    def __init__(self):
        super().__init__()
        self.children = set()

    def kill_children(self):
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def run_grid(args):
    grid = args.grid
    runs = [Run(args.out_dir, level, variant, seed) for seed in grid['seeds']
            for level in grid['levels'] for variant in grid['variants']]
    todo = [r for r in runs if not r.done()]
    log(f'{len(runs)} runs ({len(grid["levels"])} levels x {len(grid["variants"])} variants '
        f'x {len(grid["seeds"])} seeds, {grid["epochs"]} epoch(s) of {grid["num_train"]} '
        f'images); {len(runs) - len(todo)} already finished, {len(todo)} to train, '
        f'{args.jobs} at a time with {args.threads} thread(s) each')
    roots = {level: ensure_dataset(args.out_dir, level, grid) for level in grid['levels']}
    if not todo:
        return []
    stop = Stop()

    def on_signal(signum, frame):
        stop.set()
        stop.kill_children()
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed, walls, started = [], [], time.time()
    lock = threading.Lock()

    def work(run):
        if stop.is_set():
            return run, None
        log(f'training {run.name}')
        result = train_one(run, grid, roots[run.level], args.threads, stop)
        with lock:
            if result is None:
                failed.append(run)
            else:
                walls.append(result['wall_s'])
                finished = len(walls) + len(failed)
                left = len(todo) - finished
                eta = (time.time() - started) / finished * left
                log(f'done {run.name}: bbox_mAP {result["bbox_mAP"]:.3f} in '
                    f'{result["wall_s"]:.0f} s; {left} left, about {eta / 60:.0f} min')
        return run, result

    try:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(work, todo))
    except KeyboardInterrupt:
        stop.set()
        stop.kill_children()
        raise SystemExit('study interrupted: finished runs are kept; run the same command '
                         'again to continue')
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return failed


# ---------------------------------------------------------------------- the report
def complexity(variant, cache_file):
    """Offset-branch parameters and FLOPs of a variant at 128x128 (cached)."""
    cache = {}
    if osp.isfile(cache_file):
        with open(cache_file) as f:
            cache = json.load(f)
    if variant in cache:
        return cache[variant]
    import torch
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from get_flops import build_detector
    from mmdcn_plugin.analysis import deformable_layer_flops, detector_complexity_info
    from mmdcn_plugin.layers import DeformableConv2d
    torch.manual_seed(0)
    model = build_detector(osp.join(QUICKSTART, VARIANTS[variant][0]))
    info = detector_complexity_info(model, (IMAGE_SIZE, IMAGE_SIZE), show_table=False)
    rows = deformable_layer_flops(info['analyzer'])
    offset_params = sum(p.numel() for m in model.modules() if isinstance(m, DeformableConv2d)
                        for p in m.offset_head.parameters())
    cache[variant] = dict(
        params=info['params'], flops=info['flops'], offset_params=offset_params,
        offset_flops=sum(r['offset_head'] for r in rows),
        sampling_flops=sum(r['deform_sampling'] + r['deform_modulation'] for r in rows),
        deformable_layers=len(rows))
    os.makedirs(osp.dirname(cache_file), exist_ok=True)
    with open(cache_file, 'w') as f:
        json.dump(cache, f, indent=1)
    return cache[variant]


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def welch_p(a, b):
    """Two-sided Welch t-test p-value, or None when it cannot be computed."""
    if len(a) < 2 or len(b) < 2:
        return None
    try:
        from scipy import stats
    except ImportError:
        return None
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def machine_line():
    cpu = platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    import torch
    return f'{cpu}, {os.cpu_count()} cores, torch {torch.__version__}'


def grid_command(args):
    """The command that trains this grid (where the runs live and where the report
    goes do not change the numbers, so they are left out)."""
    parts = ['python tools/study.py'] + (['--quick'] if args.quick else [])
    default = GRIDS[args.grid_name]
    for key in ('levels', 'variants', 'seeds', 'epochs', 'num_train', 'num_val'):
        value = args.grid[key]
        if value != default[key]:
            flag = '--' + key.replace('_', '-')
            parts.append(f'{flag} ' + (' '.join(map(str, value))
                                       if isinstance(value, tuple) else str(value)))
    return ' '.join(parts)


def collect(args):
    grid = args.grid
    results = []
    for seed in grid['seeds']:
        for level in grid['levels']:
            for variant in grid['variants']:
                run = Run(args.out_dir, level, variant, seed)
                if run.done():
                    with open(run.result_file) as f:
                        results.append(json.load(f))
    return results


def fmt(mean, std, digits=3):
    if mean is None:
        return 'n/a'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


def build_report(args, results):
    grid = args.grid
    os.makedirs(args.docs_dir, exist_ok=True)
    cells = {}
    for r in results:
        cells.setdefault((r['level'], r['variant']), []).append(r)
    costs = {v: complexity(v, osp.join(args.out_dir, 'complexity.json'))
             for v in grid['variants']}

    summary = dict(grid=args.grid_name, date=datetime.date.today().isoformat(),
                   machine=machine_line(), command=grid_command(args),
                   epochs=grid['epochs'], num_train=grid['num_train'],
                   num_val=grid['num_val'], seeds=list(grid['seeds']),
                   jobs=args.jobs, threads=args.threads, cells=[], variants={})
    lines = [f'# Deformation study results ({args.grid_name} grid)', '',
             f'{summary["date"]}, {summary["machine"]}; `{summary["command"]}`.',
             f'Faster R-CNN (narrow ResNet-50, quick-start configs) trained from scratch for '
             f'{grid["epochs"]} epoch(s) on {grid["num_train"]} images of {IMAGE_SIZE} px, '
             f'COCO bbox metric on {grid["num_val"]} val images; mean ± std over seeds '
             f'{", ".join(map(str, grid["seeds"]))} (n per cell in brackets). Δ: difference '
             'of means from the baseline at the same level, p: two-sided Welch t-test.', '',
             '## bbox mAP', '']

    def level_table(cell_text):
        """Markdown rows: one per variant, one column per level."""
        rows = ['| variant | ' + ' | '.join(grid['levels']) + ' |',
                '|---|' + '---|' * len(grid['levels'])]
        for variant in grid['variants']:
            texts = [cell_text(level, variant, cells.get((level, variant), []))
                     for level in grid['levels']]
            rows.append('| ' + ' | '.join([VARIANTS[variant][1]] + texts) + ' |')
        return rows

    def map_cell(level, variant, rs):
        m, s = mean_std([r['bbox_mAP'] for r in rs])
        text = f'{fmt(m, s)} ({len(rs)})'
        base = [r['bbox_mAP'] for r in cells.get((level, 'baseline'), [])]
        if variant != 'baseline' and rs and base:
            delta = m - statistics.mean(base)
            p = welch_p([r['bbox_mAP'] for r in rs], base)
            text += f'<br>Δ {delta:+.3f}' + (
                '' if p is None else f', p={p:.2f}' if p >= 0.01 else ', p<0.01')
        return text

    lines += level_table(map_cell)
    lines += ['', '## bbox mAP50 / mAP75', '']
    lines += level_table(lambda level, variant, rs: (
        fmt(*mean_std([r['bbox_mAP_50'] for r in rs])) + ' / '
        + fmt(*mean_std([r['bbox_mAP_75'] for r in rs]))))
    for variant in grid['variants']:
        for level in grid['levels']:
            rs = cells.get((level, variant), [])
            summary['cells'].append(dict(
                level=level, variant=variant, n=len(rs),
                **{f'{k}_mean': mean_std([r[k] for r in rs])[0] for k in METRICS},
                **{f'{k}_std': mean_std([r[k] for r in rs])[1] for k in METRICS}))

    lines += ['', '## Cost', '',
              f'Offset branch: the offset heads of all deformable layers; FLOPs are '
              f'multiply-adds at {IMAGE_SIZE}x{IMAGE_SIZE} (DCN-aware counting, '
              '`docs/flops.md`); sampling = bilinear sampling and modulation. Train '
              f'time per iteration (batch 8) and peak resident memory of the training '
              f'process: median and max over this grid\'s runs ({args.jobs} runs at a time, '
              f'{args.threads} thread(s) each).', '',
              '| variant | params | offset-branch params | model FLOPs | offset-branch FLOPs '
              '| sampling FLOPs | train s/iter | peak RSS MB |',
              '|---|---|---|---|---|---|---|---|']
    for variant in grid['variants']:
        c = costs[variant]
        rs = [r for r in results if r['variant'] == variant]
        it = statistics.median([r['train_iter_s'] for r in rs if r['train_iter_s']]) \
            if rs else None
        mem = max((r['peak_rss_mb'] for r in rs), default=None)
        summary['variants'][variant] = dict(c, train_iter_s=it, peak_rss_mb=mem,
                                            label=VARIANTS[variant][1])
        lines.append(f'| {VARIANTS[variant][1]} | {c["params"] / 1e6:.3f} M | '
                     f'{c["offset_params"] / 1e3:.1f} k | {c["flops"] / 1e9:.3f} G | '
                     f'{c["offset_flops"] / 1e6:.1f} M | {c["sampling_flops"] / 1e6:.1f} M | '
                     + (f'{it:.3f}' if it else 'n/a') + ' | '
                     + (f'{mem:.0f}' if mem else 'n/a') + ' |')
    expected = len(grid['levels']) * len(grid['variants']) * len(grid['seeds'])
    if len(results) < expected:
        lines += ['', f'**Incomplete: {len(results)} of {expected} runs finished.**']
    lines += ['', '![bbox mAP against deformation strength](results.png)', '']
    with open(osp.join(args.docs_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(lines))
    with open(osp.join(args.docs_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    keys = ['level', 'variant', 'seed', *METRICS, 'train_iter_s', 'peak_rss_mb', 'wall_s',
            'iterations', 'epochs', 'num_train', 'num_val', 'threads', 'config']
    with open(osp.join(args.docs_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, keys, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(results)
    plot(args, cells, osp.join(args.docs_dir, 'results.png'))
    return osp.join(args.docs_dir, 'results.md')


def plot(args, cells, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    grid = args.grid
    levels, variants = grid['levels'], grid['variants']
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    width = 0.08
    for i, variant in enumerate(variants):
        xs, ms, ss = [], [], []
        for j, level in enumerate(levels):
            m, s = mean_std([r['bbox_mAP'] for r in cells.get((level, variant), [])])
            if m is not None:
                xs.append(j + (i - (len(variants) - 1) / 2) * width)
                ms.append(m)
                ss.append(s)
        if xs:
            ax.errorbar(xs, ms, yerr=ss, marker='o', capsize=3, label=VARIANTS[variant][1],
                        linestyle='--' if variant == 'baseline' else '-')
    ax.set_xticks(range(len(levels)), levels)
    ax.set_xlabel('deformation strength of the dataset')
    ax.set_ylabel('COCO bbox mAP (val)')
    ax.set_title(f'Deformation study: mean ± std over {len(grid["seeds"])} seed(s), '
                 f'{grid["epochs"]} epochs', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    failed = [] if args.report_only else run_grid(args)
    results = collect(args)
    if not results:
        raise SystemExit(f'study: no finished run under {args.out_dir}')
    report = build_report(args, results)
    log(f'report: {report} ({len(results)} runs; {time.time() - start:.0f} s this call)')
    if failed:
        raise SystemExit('study: these runs failed (their logs are in their folders; run '
                         'the command again to retry): ' + ', '.join(r.name for r in failed))


if __name__ == '__main__':
    main()
