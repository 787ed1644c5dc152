"""The study's grid of runs: datasets, one training per cell and seed, resume, results.

Every run trains a quick-start config with the repository's ``tools/train.py`` in
its own process (``--resume``: an interrupted run continues from its last
checkpoint) and leaves ``result.json`` when it finishes; a run with a result is
never redone.  Runs are ordered seed first, so a study stopped early still covers
every cell with the seeds it finished.
"""
import concurrent.futures
import json
import os
import os.path as osp
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .constants import (GRID_KEYS, GRIDS, IMAGE_SIZE, METRICS, REPO_ROOT, TOOLS,
                        variant_config)


def log(msg: str) -> None:
    print(f'[study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


@dataclass
class StudySetup:
    """One study: its grid and where it runs.

    Attributes:
        grid (dict): ``levels``, ``variants``, ``seeds``, ``epochs``, ``num_train``,
            ``num_val``, ``checkpoint_interval`` (see ``constants.GRIDS``).
        grid_name (str): the named grid it starts from (``'full'`` or ``'quick'``).
        out_dir (str): runs and datasets.
        docs_dir (str): where the report goes.
        jobs (int): runs trained at the same time.
        threads (int): torch threads per run.
    """
    grid: dict
    grid_name: str
    out_dir: str
    docs_dir: str
    jobs: int = 2
    threads: int = 1

    def command(self) -> str:
        """The command that trains this grid (where the runs live and where the report
        goes do not change the numbers, so they are left out)."""
        parts = ['python tools/study.py'] + (['--quick'] if self.grid_name == 'quick' else [])
        default = GRIDS[self.grid_name]
        for key in GRID_KEYS:
            value = self.grid[key]
            if value != default[key]:
                flag = '--' + key.replace('_', '-')
                parts.append(f'{flag} ' + (' '.join(map(str, value))
                                           if isinstance(value, tuple) else str(value)))
        return ' '.join(parts)

    def runs(self) -> List['Run']:
        """Every run of the grid, seed first."""
        return [Run(self.out_dir, level, variant, seed) for seed in self.grid['seeds']
                for level in self.grid['levels'] for variant in self.grid['variants']]


def make_grid(name: str, **overrides) -> dict:
    """The named grid with ``overrides`` (None values ignored, lists made tuples), checked.

    Raises:
        ValueError: an unknown grid or key, a count below 1, or a negative seed.
    """
    if name not in GRIDS:
        raise ValueError(f'name: expected one of {list(GRIDS)}, got {name!r}')
    unknown = sorted(set(overrides) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f'overrides: expected keys among {list(GRID_KEYS)}, got {unknown}')
    grid = dict(GRIDS[name])
    for key, value in overrides.items():
        if value is not None:
            grid[key] = tuple(value) if isinstance(value, list) else value
    for key in ('epochs', 'num_train', 'num_val'):
        if grid[key] < 1:
            raise ValueError(f'--{key.replace("_", "-")} must be >= 1, got {grid[key]}')
    if any(s < 0 for s in grid['seeds']):
        raise ValueError(f'--seeds must be non-negative, got {list(grid["seeds"])}')
    return grid


def milestones(epochs: int) -> List[int]:
    """The quick-start's step schedule ([18, 22] of 24) scaled to ``epochs``."""
    return sorted({max(1, min(epochs, round(epochs * 0.75))),
                   max(1, min(epochs, round(epochs * 22 / 24)))})


def dataset_dir(out_dir: str, level: str) -> str:
    return osp.join(out_dir, 'data', level)


def ensure_dataset(out_dir: str, level: str, grid: dict) -> str:
    """Generate the level's dataset once (generator seed 0 at every level); its root.

    Raises:
        ValueError: the folder holds a dataset of another specification.
    """
    root = dataset_dir(out_dir, level)
    spec = dict(level=level, num_train=grid['num_train'], num_val=grid['num_val'], seed=0,
                image_size=IMAGE_SIZE)
    spec_file = osp.join(root, 'study_spec.json')
    if osp.isfile(spec_file):
        with open(spec_file) as f:
            found = json.load(f)
        if found == spec:
            return root
        raise ValueError(f'study: {root} holds another dataset: expected {spec}, found '
                         f'{found}; remove it or use another --out-dir')
    log(f'generating the {level!r} dataset ({grid["num_train"]} train + {grid["num_val"]} '
        f'val images) into {root}')
    subprocess.run([sys.executable, osp.join(TOOLS, 'make_synthetic_coco.py'),
                    '--out-dir', root, '--num-train', str(grid['num_train']),
                    '--num-val', str(grid['num_val']), '--seed', '0', '--deformation', level,
                    '--image-size', str(IMAGE_SIZE), '--no-progress'], check=True)
    with open(spec_file, 'w') as f:
        json.dump(spec, f)
    return root


def train_overrides(data_root: str, grid: dict, seed: int) -> List[str]:
    """``--cfg-options`` of one run: the level's data, the grid's schedule, the seed."""
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
             # The study's own recipe, the one docs/study/ was trained with, whatever
             # the quick-start config has moved to since: from scratch (no pretrained
             # backbone) with a 100-iteration warm-up.
             'model.backbone.init_cfg=None', 'param_scheduler.0.end=100',
             f'default_hooks.checkpoint.interval={grid["checkpoint_interval"]}',
             'default_hooks.checkpoint.max_keep_ckpts=1']
    return opts


def read_scalars(work_dir: str):
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


class Run:
    """One cell and seed of the grid; its folder and its ``result.json``."""

    def __init__(self, out_dir: str, level: str, variant: str, seed: int):
        self.level, self.variant, self.seed = level, variant, seed
        self.dir = osp.join(out_dir, 'runs', level, variant, f'seed{seed}')
        self.result_file = osp.join(self.dir, 'result.json')

    @property
    def name(self) -> str:
        return f'{self.level}/{self.variant}/seed{self.seed}'

    def done(self) -> bool:
        return osp.isfile(self.result_file)

    def result(self) -> dict:
        with open(self.result_file) as f:
            return json.load(f)


def exit_code(status: int) -> int:
    """``os.waitstatus_to_exitcode`` (Python >= 3.9), for Python 3.8 too."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_result(run: Run, grid: dict, train: List[dict], val: List[dict], peak_rss_mb: float,
               wall_s: float, threads: int) -> dict:
    """The ``result.json`` of a finished run, from its training and validation records."""
    final = val[-1]
    # MMDetection's CocoMetric logs no metric at all when the model detects nothing
    # (an early, weak run can): that is an mAP of 0, recorded as such.
    no_detections = not any(k.startswith('coco/') for k in final)
    times = [r['time'] for r in train[1:] if 'time' in r] or [r['time'] for r in train]
    return dict(
        level=run.level, variant=run.variant, seed=run.seed,
        config=osp.basename(variant_config(run.variant)),
        epochs=grid['epochs'], num_train=grid['num_train'], num_val=grid['num_val'],
        iterations=max((r.get('iter', r.get('step', 0)) for r in train), default=0),
        train_iter_s=statistics.median(times) if times else None,
        peak_rss_mb=peak_rss_mb, wall_s=wall_s, threads=threads,
        no_detections=no_detections,
        **{m: final.get(f'coco/{m}', 0.0 if no_detections else None) for m in METRICS})


def train_one(run: Run, grid: dict, data_root: str, threads: int,
              stop: 'Stop') -> Optional[dict]:
    """Train one run to the end; write and return its result (None on failure)."""
    os.makedirs(run.dir, exist_ok=True)
    cmd = [sys.executable, osp.join(TOOLS, 'train.py'), variant_config(run.variant),
           '--work-dir', run.dir, '--resume',
           '--cfg-options', *train_overrides(data_root, grid, run.seed)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log_file = osp.join(run.dir, 'train.log')
    start = time.time()
    with open(log_file, 'a') as out:
        out.write(f'\n$ {" ".join(cmd)}\n')
        out.flush()
        child = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        stop.children.add(child.pid)
        try:
            # wait4: this child's own peak resident memory.
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            stop.children.discard(child.pid)
    child.returncode = exit_code(status)
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
    result = run_result(run, grid, train, val, usage.ru_maxrss / 1024, wall, threads)
    with open(run.result_file + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(run.result_file + '.tmp', run.result_file)   # never a half-written result
    return result


class Stop(threading.Event):
    """Set on Ctrl-C/SIGTERM; the children (own sessions) are killed with it."""

    def __init__(self):
        super().__init__()
        self.children = set()

    def kill_children(self) -> None:
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def run_grid(setup: StudySetup) -> List[Run]:
    """Train every run of the grid that has no result yet; return the failed ones.

    Raises:
        SystemExit: interrupted (Ctrl-C or SIGTERM); finished runs are kept.
    """
    grid = setup.grid
    runs = setup.runs()
    todo = [r for r in runs if not r.done()]
    log(f'{len(runs)} runs ({len(grid["levels"])} levels x {len(grid["variants"])} variants '
        f'x {len(grid["seeds"])} seeds, {grid["epochs"]} epoch(s) of {grid["num_train"]} '
        f'images); {len(runs) - len(todo)} already finished, {len(todo)} to train, '
        f'{setup.jobs} at a time with {setup.threads} thread(s) each')
    roots = {level: ensure_dataset(setup.out_dir, level, grid) for level in grid['levels']}
    if not todo:
        return []
    return _train_all(todo, grid, roots, setup.jobs, setup.threads)


def _train_all(todo: Sequence[Run], grid: dict, roots: Dict[str, str], jobs: int,
               threads: int) -> List[Run]:
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
        result = train_one(run, grid, roots[run.level], threads, stop)
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
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
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


def collect(setup: StudySetup) -> List[dict]:
    """The results of the grid's finished runs, seed first."""
    return [run.result() for run in setup.runs() if run.done()]
