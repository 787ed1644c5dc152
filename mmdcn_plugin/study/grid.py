"""The study's grid: arms x variants x seeds, resumed from the runs' JSONs.

A run is done when its JSON exists (``<docs_dir>/runs/<arm>/<variant>/seed<k>.json``,
committed as it finishes); its work dir (``<out_dir>/work/<arm>/<variant>/seed<k>``)
holds the checkpoints an interrupted run resumes from.  Runs are ordered seed first,
so a study stopped early (or ``--max-runs``) covers every cell with the seeds it
finished, each variant paired with its baseline seed.
"""
import concurrent.futures
import json
import os
import os.path as osp
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .constants import ARMS, ON_OBJECT_IMAGES, QUICK, SEEDS, SWEEPS, VARIANTS
from .recipe import Recipe, ensure_dataset, stretched_from
from .records import read_scalars  # noqa: F401  (comparison.demo reads runs through here)
from .run import exit_code, run_one  # noqa: F401  (exit_code: part of this module's API)


def log(msg: str) -> None:
    # One write per line: runs finishing side by side must not interleave their lines.
    sys.stdout.write(f'[study {time.strftime("%H:%M:%S")}] {msg}\n')
    sys.stdout.flush()


class Run:
    """One arm, variant and seed: its work dir and its JSON."""

    def __init__(self, setup: 'StudySetup', arm: str, variant: str, seed: int):
        self.arm, self.variant, self.seed = arm, variant, seed
        self.work_dir = osp.join(setup.out_dir, 'work', arm, variant, f'seed{seed}')
        self.result_file = osp.join(setup.docs_dir, 'runs', arm, variant, f'seed{seed}.json')

    @property
    def name(self) -> str:
        return f'{self.arm}/{self.variant}/seed{self.seed}'

    def done(self) -> bool:
        return osp.isfile(self.result_file)

    def result(self) -> dict:
        with open(self.result_file) as f:
            return json.load(f)


@dataclass
class StudySetup:
    """One study: what it trains and where.

    Attributes:
        recipe (Recipe): from :func:`~.recipe.read_recipe`.
        arms, variants, seeds: the grid.
        out_dir (str): datasets, transformed splits and work dirs (never committed).
        docs_dir (str): the runs' JSONs (``runs/``) and the report.
        jobs (int): runs at the same time; threads (int): torch threads per run.
        sweeps (dict): transform -> values; on_object_images (int): see constants.
    """
    recipe: Recipe
    out_dir: str
    docs_dir: str
    arms: Sequence[str] = tuple(ARMS)
    variants: Sequence[str] = tuple(VARIANTS)
    seeds: Sequence[int] = SEEDS
    jobs: int = 1
    threads: int = 1
    sweeps: Dict[str, Sequence[float]] = field(default_factory=lambda: dict(SWEEPS))
    on_object_images: int = ON_OBJECT_IMAGES

    def __post_init__(self):
        for name, values, allowed in (('arms', self.arms, ARMS),
                                      ('variants', self.variants, VARIANTS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f'{name}: expected some of {list(allowed)}, got {list(values)}')
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                 for s in self.seeds):
            raise ValueError(f'seeds: expected non-negative ints, got {list(self.seeds)}')
        for name in ('jobs', 'threads'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name}: expected >= 1, got {getattr(self, name)}')

    @classmethod
    def quick(cls, recipe: Recipe, out_dir: str, docs_dir: str, **kwargs) -> 'StudySetup':
        """The ``--quick`` grid: both arms, :data:`~.constants.QUICK`'s variants, seeds
        and sweeps (``kwargs`` override)."""
        args = dict(variants=QUICK['variants'], seeds=QUICK['seeds'],
                    sweeps={k: tuple(v) for k, v in QUICK['sweeps'].items()},
                    on_object_images=QUICK['on_object_images'])
        args.update({k: v for k, v in kwargs.items() if v is not None})
        return cls(recipe, out_dir, docs_dir, **args)

    def runs(self) -> List[Run]:
        """Every run of the grid, seed first."""
        return [Run(self, arm, variant, seed) for seed in self.seeds for arm in self.arms
                for variant in self.variants]

    def command(self) -> str:
        """The command line of this grid (where runs and the report go left out)."""
        quick = self.recipe.quick
        ref = StudySetup.quick(self.recipe, '', '') if quick else StudySetup(self.recipe, '', '')
        parts = ['python tools/study.py'] + (['--quick'] if quick else [])
        if stretched_from(self.recipe):
            parts.append(f'--epochs {self.recipe.length}')
        for name in ('arms', 'variants', 'seeds'):
            if tuple(getattr(self, name)) != tuple(getattr(ref, name)):
                parts.append(f'--{name} ' + ','.join(map(str, getattr(self, name))))
        return ' '.join(parts)


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


def check_finished(runs: Sequence[Run], recipe: Recipe) -> None:
    """Raise ValueError if a finished run was trained with another recipe than ``recipe``
    (other weights, schedule or data): adding runs to it would mix two studies."""
    expected = recipe.as_dict()
    other = [r.name for r in runs if r.done() and r.result()['recipe'] != expected]
    if other:
        raise ValueError(f'recipe: expected the finished runs to have the current recipe '
                         f'{expected}, but these were trained with another: {other}. Move '
                         'their JSONs away to start the study again, or check out the '
                         'recipe they were trained with')


def run_grid(setup: StudySetup, max_runs: Optional[int] = None) -> List[Run]:
    """Train and evaluate every run without a JSON (at most ``max_runs``); the failed ones.

    Raises:
        ValueError: a finished run has another recipe (:func:`check_finished`).
        SystemExit: interrupted (Ctrl-C or SIGTERM); finished runs are kept.
    """
    from .recipe import run_config
    from .sweep import prepare_splits
    runs = setup.runs()
    check_finished(runs, setup.recipe)
    todo = [r for r in runs if not r.done()]
    if max_runs is not None:
        todo = todo[:max_runs]
    log(f'{len(runs)} runs ({len(setup.arms)} arms x {len(setup.variants)} variants x '
        f'{len(setup.seeds)} seeds; {setup.recipe.describe()}); {len(runs) - len(todo)} '
        f'already finished or left for later, {len(todo)} to train, {setup.jobs} at a time '
        f'with {setup.threads} thread(s) each')
    if not todo:
        return []
    root = ensure_dataset(setup.out_dir, setup.recipe, log)
    cache_dir = osp.join(setup.out_dir, 'splits', osp.basename(root))
    count = prepare_splits(run_config(setup.recipe, root), setup.sweeps, cache_dir)
    log(f'{count} transformed val splits in {cache_dir}')
    return _run_all(todo, setup, root, cache_dir)


def _run_all(todo: Sequence[Run], setup: StudySetup, root: str, cache_dir: str) -> List[Run]:
    stop = Stop()

    def on_signal(signum, frame):
        stop.set()
        stop.kill_children()
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed, finished, started = [], [], time.time()
    lock = threading.Lock()

    def work(run):
        if stop.is_set():
            return
        log(f'training {run.name}')
        try:
            result = run_one(run, setup, root, cache_dir, stop.children, log)
        except Exception as e:   # one run's failure must not take the other runs down
            log(f'FAILED {run.name}: {type(e).__name__}: {e}')
            result = None
        if stop.is_set():
            return
        with lock:
            (failed if result is None else finished).append(run)
            if result is not None:
                left = len(todo) - len(finished) - len(failed)
                eta = (time.time() - started) / (len(finished) + len(failed)) * left
                log(f'done {run.name}: bbox_mAP {result["final"]["bbox_mAP"]:.3f}, '
                    f'{result["wall_s"]:.0f} s; wrote {run.result_file}; {left} left, '
                    f'about {eta / 60:.0f} min')

    try:
        with concurrent.futures.ThreadPoolExecutor(setup.jobs) as pool:
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
    """The JSONs of the grid's finished runs, seed first."""
    return [run.result() for run in setup.runs() if run.done()]
