"""The study's grid: arms x [levels x] variants [x offset recipes] x seeds, resumed from
the runs' JSONs.

A run is done when its JSON exists (``<docs_dir>/runs/<arm>/<variant>/seed<k>.json``,
committed as it finishes); its work dir (``<out_dir>/work/<arm>/<variant>/seed<k>``)
holds the checkpoints an interrupted run resumes from.  A study over deformation levels
(``levels``) puts the level in both paths (``runs/<arm>/<level>/...``), and a deformable
variant trained with another offset recipe than the quick-start one is named
``<variant>+<recipe>`` (``dcnv2+ramp``).  Runs are ordered seed first,
so a study stopped early (or ``--max-runs``) covers every cell with the seeds it
finished, each variant paired with its baseline seed.
"""
import concurrent.futures
import json
import os
import os.path as osp
import re
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .constants import (ARMS, CONV_HEAD_VARIANTS, DEFORMATION, DEFORMATION_LEVELS,
                        OFFSET_RECIPE, OFFSET_RECIPES, ON_OBJECT_IMAGES, QUICK, SEEDS, SWEEPS,
                        VARIANTS, is_deformable)
from .progress import log
from .recipe import Recipe, ensure_dataset, stretched_from
from .run import exit_code, run_one  # noqa: F401  (exit_code: part of this module's API)


def variant_key(variant: str, offset_recipe: str = OFFSET_RECIPE) -> str:
    """``variant``, or ``variant+recipe`` for another offset recipe than the default."""
    return variant if offset_recipe == OFFSET_RECIPE else f'{variant}+{offset_recipe}'


class Run:
    """One arm, [level,] variant, [offset recipe,] and seed: its work dir and its JSON."""

    def __init__(self, setup: 'StudySetup', arm: str, variant: str, seed: int,
                 level: Optional[str] = None, offset_recipe: str = OFFSET_RECIPE):
        self.arm, self.variant, self.seed = arm, variant, seed
        self.level = level or DEFORMATION
        self.offset_recipe = offset_recipe if is_deformable(variant) else OFFSET_RECIPE
        self.key = variant_key(variant, self.offset_recipe)
        parts = [arm] + ([level] if level else []) + [self.key]
        self.work_dir = osp.join(setup.out_dir, 'work', *parts, f'seed{seed}')
        self.result_file = osp.join(setup.docs_dir, 'runs', *parts, f'seed{seed}.json')
        self._parts = parts

    @property
    def name(self) -> str:
        return '/'.join(self._parts) + f'/seed{self.seed}'

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
        levels: deformation levels (:data:`~.constants.DEFORMATION_LEVELS`), each with its
            own dataset; None: the study's one ``moderate`` dataset, no level in the paths.
        offset_recipes: the deformable variants' offset recipes
            (:data:`~.constants.OFFSET_RECIPES`); the baseline trains once whatever they are.
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
    levels: Optional[Sequence[str]] = None
    offset_recipes: Sequence[str] = (OFFSET_RECIPE,)

    def __post_init__(self):
        for name, values, allowed in (('arms', self.arms, ARMS),
                                      ('variants', self.variants, VARIANTS),
                                      ('levels', self.levels or [DEFORMATION],
                                       DEFORMATION_LEVELS),
                                      ('offset_recipes', self.offset_recipes, OFFSET_RECIPES)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f'{name}: expected some of {list(allowed)}, got {list(values)}')
        bounded = [r for r in self.offset_recipes if OFFSET_RECIPES[r].get('max_offset')]
        other_heads = [v for v in self.variants
                       if is_deformable(v) and v not in CONV_HEAD_VARIANTS]
        if bounded and other_heads:
            raise ValueError(f'offset_recipes: {bounded} bound the ConvOffsetHead, expected '
                             f'variants that have it {list(CONV_HEAD_VARIANTS)} or the '
                             f'baseline, got {other_heads}')
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

    def describe(self) -> str:
        """``'2 arms x 4 variants x 5 seeds'`` (levels and offset recipes when several)."""
        parts = [f'{len(self.arms)} arms']
        if self.levels:
            parts.append(f'{len(self.levels)} levels')
        parts.append(f'{len(self.variants)} variants')
        if len(self.offset_recipes) > 1:
            parts.append(f'{len(self.offset_recipes)} offset recipes')
        return ' x '.join(parts + [f'{len(self.seeds)} seeds'])

    def runs(self) -> List[Run]:
        """Every run of the grid, seed first (the baseline once per arm, level and seed)."""
        out = []
        for seed in self.seeds:
            for arm in self.arms:
                for level in self.levels or [None]:
                    for variant in self.variants:
                        recipes = self.offset_recipes if is_deformable(variant) else [
                            OFFSET_RECIPE]
                        out += [Run(self, arm, variant, seed, level, r) for r in recipes]
        return out

    def command(self) -> str:
        """The command line of this grid (where runs and the report go left out)."""
        quick = self.recipe.quick
        ref = StudySetup.quick(self.recipe, '', '') if quick else StudySetup(self.recipe, '', '')
        parts = ['python tools/study.py'] + (['--quick'] if quick else [])
        if stretched_from(self.recipe):
            parts.append(f'--epochs {self.recipe.length}')
        if self.levels:
            parts.append('--levels ' + ','.join(self.levels))
        for name in ('arms', 'variants', 'offset_recipes', 'seeds'):
            if tuple(getattr(self, name)) != tuple(getattr(ref, name)):
                flag = name.replace('_', '-')
                parts.append(f'--{flag} ' + ','.join(map(str, getattr(self, name))))
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


#: What an offset recipe changes in a run's settings (:func:`~.recipe.offset_recipe_overrides`).
OFFSET_RECIPE_KEYS = ('optim_wrapper', 'custom_hooks', 'model')


def _offset_settings(overrides: dict) -> dict:
    return {k: overrides.get(k) for k in OFFSET_RECIPE_KEYS}


def check_finished(runs: Sequence[Run], recipe: Recipe) -> None:
    """Raise ValueError if a finished run was trained with another recipe than ``recipe``
    (other weights, schedule or data), or with other settings of its offset recipe than
    :data:`~.constants.OFFSET_RECIPES` gives now: adding runs to it would mix two studies."""
    from .recipe import offset_recipe_overrides
    expected = recipe.as_dict()
    other = [r.name for r in runs if r.done() and r.result()['recipe'] != expected]
    if other:
        raise ValueError(f'recipe: expected the finished runs to have the current recipe '
                         f'{expected}, but these were trained with another: {other}. Move '
                         'their JSONs away to start the study again, or check out the '
                         'recipe they were trained with')
    other = [r.name for r in runs if r.done() and 'overrides' in r.result()
             and _offset_settings(r.result()['overrides'])
             != _offset_settings(offset_recipe_overrides(r.offset_recipe))]
    if other:
        raise ValueError(f'offset_recipe: expected the finished runs to have their offset '
                         f'recipe\'s current settings (mmdcn_plugin.study.constants.'
                         f'OFFSET_RECIPES), but these were trained with others: {other}. '
                         'Give a changed recipe a new name, or move their JSONs away')


def run_grid(setup: StudySetup, max_runs: Optional[int] = None,
             adopt_from: Optional[str] = None) -> List[Run]:
    """Train and evaluate every run without a JSON (at most ``max_runs``); the failed ones.

    ``adopt_from``: the docs dir of a one-level study (``docs/study``) whose finished
    ``moderate`` runs this grid takes over instead of training them again, when they are
    the same run (:func:`adopt_finished`).

    Raises:
        ValueError: a finished run has another recipe (:func:`check_finished`).
        SystemExit: interrupted (Ctrl-C or SIGTERM); finished runs are kept.
    """
    from .recipe import run_config
    from .sweep import prepare_splits
    runs = setup.runs()
    if adopt_from:
        for run in runs:
            if not run.done() and adopt_finished(run, setup, adopt_from):
                log(f'{run.name}: taken over from {adopt_from} (the same run)')
    check_finished(runs, setup.recipe)
    todo = [r for r in runs if not r.done()]
    if max_runs is not None:
        todo = todo[:max_runs]
    log(f'{len(runs)} runs ({setup.describe()}; {setup.recipe.describe()}); '
        f'{len(runs) - len(todo)} already finished or left for later, {len(todo)} to train, '
        f'{setup.jobs} at a time with {setup.threads} thread(s) each')
    if not todo:
        return []
    data = {}
    for level in sorted({r.level for r in todo}, key=DEFORMATION_LEVELS.index):
        root = ensure_dataset(setup.out_dir, setup.recipe, log, level)
        cache_dir = osp.join(setup.out_dir, 'splits', osp.basename(root))
        count = prepare_splits(run_config(setup.recipe, root), setup.sweeps, cache_dir)
        log(f'{count} transformed val splits in {cache_dir}')
        data[level] = (root, cache_dir)
    return _run_all(todo, setup, data)


def adopt_finished(run: Run, setup: StudySetup, source_docs: str) -> bool:
    """Copy the finished run of the one-level study in ``source_docs`` that is ``run``
    (the ``moderate`` level, the same arm, variant, offset recipe and seed, the same
    recipe, and the same run settings but for where the dataset lies) into ``run``'s
    JSON, with ``adopted_from``; whether it did.  The study's own rule decides: anything
    else differing, and the run is trained here.
    """
    from .recipe import dataset_root, run_overrides
    from ..utils import write_json_atomic
    from .run import portable
    if run.level != DEFORMATION:
        return False
    source = Run(StudySetup(setup.recipe, setup.out_dir, source_docs, arms=[run.arm],
                            variants=[run.variant], seeds=[run.seed],
                            offset_recipes=[run.offset_recipe]),
                 run.arm, run.variant, run.seed, None, run.offset_recipe)
    if not source.done():
        return False
    record = source.result()
    if record.get('recipe') != setup.recipe.as_dict():
        return False
    mine = run_overrides(setup.recipe, dataset_root(setup.out_dir, setup.recipe, run.level),
                         run.seed, run.arm, offset_recipe=run.offset_recipe)
    theirs = json.loads(json.dumps(record['overrides']))
    if portable(_strip_roots(mine)) != _strip_roots(theirs):
        return False
    record.update(level=run.level, offset_recipe=run.offset_recipe,
                  adopted_from=portable(source.result_file))
    write_json_atomic(run.result_file, record)
    return True


def _strip_roots(overrides):
    """``overrides`` with every dataset path cut to the part after the study's folder."""
    text = json.dumps(overrides)
    return json.loads(re.sub(r'[^"]*/data/', 'DATA/', text))


def _run_all(todo: Sequence[Run], setup: StudySetup, data: Dict[str, tuple]) -> List[Run]:
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
            result = run_one(run, setup, *data[run.level], stop.children, log)
        except Exception:   # one run's failure must not take the other runs down
            log(f'FAILED {run.name}:\n{traceback.format_exc()}')
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
