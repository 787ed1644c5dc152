"""One run of the study: train (resumable), evaluate, write its JSON.

Training is MMDetection's ``train.py --resume`` through the package
(:mod:`mmdcn_plugin.engine.mmdet_tools`) in a child process (an interrupted run
continues from its last checkpoint); the evaluation is
:mod:`.sweep` in a second one.  The run's JSON (:func:`run_record`) is written only
when both finished, atomically, so a run with a JSON is complete.
"""
import datetime
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import List, Optional, Tuple

from .constants import BASE_CONFIG, METRICS, REPO_ROOT, variant_config
from .records import (final_metrics, read_offset_stats, read_scalars, seconds_per_iter,
                      val_curve)

SCHEMA = 1


def exit_code(status: int) -> int:
    """``os.waitstatus_to_exitcode`` (Python >= 3.9), for Python 3.8 too."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_child(cmd: List[str], log_file: str, threads: int, children: set
              ) -> Tuple[int, float, float]:
    """Run ``cmd`` from the repository root, output appended to ``log_file``.

    Returns:
        (exit code, wall seconds, the child's peak resident memory in MB).
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.time()
    with open(log_file, 'a') as out:
        out.write(f'\n$ {" ".join(cmd)}\n')
        out.flush()
        child = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        children.add(child.pid)
        try:
            _, status, usage = os.wait4(child.pid, 0)   # this child's own peak memory
        finally:
            children.discard(child.pid)
    return exit_code(status), time.time() - start, usage.ru_maxrss / 1024


def portable(value):
    """``value`` (a path, text or JSON-able structure) with the checkout's absolute path
    cut from every path inside it: the JSONs are committed."""
    here = REPO_ROOT + os.sep
    if isinstance(value, str):
        return value.replace(here, '')
    return json.loads(json.dumps(value).replace(json.dumps(here)[1:-1], ''))


def tail(log_file: str, lines: int = 25) -> str:
    with open(log_file) as f:
        return ''.join(f.readlines()[-lines:])


def run_record(run, setup, config_text: str, overrides: dict, train: List[dict],
               val: List[dict], checkpoint: str, evaluation: dict, walls: dict,
               peak_rss_mb: float, offsets: Optional[dict] = None) -> dict:
    """The JSON of a finished run; ``tools/study.py``'s docstring lists its keys.

    ``train_wall_s`` is the last training session's (a resumed run's earlier sessions
    are not counted); ``sec_per_iter`` is over all its sessions; ``offsets`` is
    :func:`~.records.read_offset_stats`'s (None for the baseline).
    """
    from ..utils import machine_line
    recipe = setup.recipe
    return dict(
        schema=SCHEMA, arm=run.arm, variant=run.variant, seed=run.seed, level=run.level,
        offset_recipe=run.offset_recipe,
        config=osp.relpath(variant_config(run.variant), REPO_ROOT),
        recipe_config=osp.relpath(BASE_CONFIG, REPO_ROOT), recipe=recipe.as_dict(),
        overrides=portable(overrides), run_config=portable(config_text),
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        machine=machine_line(), threads=setup.threads, jobs=setup.jobs,
        iterations=max((int(r.get('iter', r.get('step', 0))) for r in train), default=0),
        sec_per_iter=seconds_per_iter(train), peak_rss_mb=round(peak_rss_mb, 1),
        train_wall_s=round(walls['train'], 1), eval_wall_s=round(walls['eval'], 1),
        wall_s=round(walls['train'] + walls['eval'], 1),
        checkpoint=osp.basename(checkpoint),
        val_curve=val_curve(val), final=final_metrics(val, METRICS),
        sweeps=evaluation['sweeps'], on_object=evaluation['on_object'], offsets=offsets)


def run_one(run, setup, data_root: str, cache_dir: str, children: set,
            log=print) -> Optional[dict]:
    """Train and evaluate ``run``; write and return its JSON (None on failure, logged)."""
    from ..engine.mmdet_tools import tool_command
    from ..utils import last_checkpoint, write_json_atomic
    from .recipe import run_overrides, write_run_config
    os.makedirs(run.work_dir, exist_ok=True)
    overrides = run_overrides(setup.recipe, data_root, run.seed, run.arm,
                              offset_recipe=run.offset_recipe)
    # Beside the work dir, not in it: MMEngine dumps the merged config into the work dir
    # under the config's own file name.
    config = run.work_dir + '.py'
    text = write_run_config(config, variant_config(run.variant), overrides)
    log_file = osp.join(run.work_dir, 'study.log')
    cmd = tool_command('train', config, '--work-dir', run.work_dir, '--resume')
    rc, train_wall, rss = run_child(cmd, log_file, setup.threads, children)
    checkpoint = last_checkpoint(run.work_dir)
    if rc != 0 or checkpoint is None:
        log(f'FAILED {run.name}: training (exit {rc}); last lines of {log_file}:\n'
            f'{tail(log_file)}')
        return None
    train, val = read_scalars(run.work_dir)
    if not val:
        log(f'FAILED {run.name}: training ended without a validation record ({log_file})')
        return None
    eval_file = osp.join(run.work_dir, 'evaluation.json')
    on_object = setup.on_object_images if (run.arm == 'a' and run.variant != 'baseline') else 0
    cmd = [sys.executable, '-m', 'mmdcn_plugin.study.sweep', config, checkpoint,
           '--sweeps', json.dumps(setup.sweeps), '--cache-dir', cache_dir,
           '--work-dir', run.work_dir, '--on-object-images', str(on_object),
           '--out', eval_file]
    rc, eval_wall, eval_rss = run_child(cmd, log_file, setup.threads, children)
    if rc != 0:
        log(f'FAILED {run.name}: evaluation (exit {rc}); last lines of {log_file}:\n'
            f'{tail(log_file)}')
        return None
    with open(eval_file) as f:
        evaluation = json.load(f)
    record = run_record(run, setup, text, overrides, train, val, checkpoint, evaluation,
                        dict(train=train_wall, eval=eval_wall), max(rss, eval_rss),
                        read_offset_stats(run.work_dir))
    write_json_atomic(run.result_file, record)   # never a half-written result
    return record
