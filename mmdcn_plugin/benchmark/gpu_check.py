"""The end-to-end check of a GPU machine, in one call: ``tools/gpu_check.py --out-dir D``.

Steps, each a subprocess of its own (a crash, e.g. a segmentation fault in a compiled
extension, ends that step only), each with a time budget, all within one total
budget so that the check fits one call of a lent machine:

1. ``environment``: GPU, driver, torch/CUDA/cuDNN, mmcv/mmdet/mmengine versions, TF32
   switches, the backends that run on CUDA, git commit, date;
2. ``tests``: the CUDA tests (``python -m pytest ... --device cuda``);
3. ``data``, ``train``, ``test``: the quick-start DCNv2 detector trained for one
   epoch and tested, through ``tools/train.py`` and ``tools/test.py``, on synthetic
   data from ``tools/make_synthetic_coco.py``;
4. ``tests-triton``: the Triton backend's tests, when they exist (compiling kernels
   may take long: a step of its own);
5. ``ops-float32``, ``ops-float16``, ``ops-bfloat16``, ``ops-float32-strict-conv``:
   ``tools/benchmark.py ops --device cuda`` on ResNet-50's c3-c5 shapes of a batch-2
   800x1216 batch (cuDNN conv, mmcv's raw kernel, torchvision, every backend),
   ``overhead``: the wrapper's cost per call on tiny tensors (``benchmark.py overhead``),
   ``model-fp32``, ``model-amp``: ``tools/benchmark.py model --device cuda`` on
   full-size training steps (mmdet's plain Faster R-CNN R50-FPN, this package's DCNv2
   config, mmdet's mmcv DCN configs) on a synthetic 800x1216 batch of 2; in the order
   the issue's tables need them most (fp32 op, wrapper overhead, fp16 op, fp32 step,
   bf16 op, strict conv, AMP step).

Into ``out_dir`` go ``report.md`` and ``gpu_check.json``, rewritten after every step
(so a check cut short keeps what it did), ``environment.json``, and ``logs/<step>.log``
with each step's whole output; the benchmarks' own files go to ``<step>/``.  A failed
step is recorded and the rest go on; a step whose input failed (``test`` after
``train``) is recorded as skipped.

It runs in a checkout (it needs ``tests/`` and ``tools/``): the command line passes
its root; the subprocesses get it on ``PYTHONPATH``.
"""
import json
import os
import os.path as osp
import re
import shlex
import time
import traceback
import xml.etree.ElementTree as ET
from typing import Callable, Dict, List, Optional, Sequence

from ..utils import write_text_atomic
from .gpu_environment import (  # noqa: F401
    backends_by_device,
    collect_environment,
    git_commit,
    write_environment,
)
from .gpu_steps import (  # noqa: F401
    DCN_CONFIG,
    DEFAULT_BUDGET_S,
    DEFAULT_TESTS,
    HEARTBEAT_S,
    MIN_STEP_S,
    MMDET_DCN_CONFIGS,
    OP_DTYPES,
    PLAIN_CONFIG,
    QUICKSTART_CONFIG,
    REPORT,
    RESULTS,
    STATUSES,
    TRITON_TESTS,
    Step,
    _no_log,
    _now,
    data_root_options,
    default_steps,
    existing_tests,
    select_steps,
)
from .timed_command import (  # noqa: F401
    STOP_SIGNALS,
    _last_line,
    _signal_name,
    run_command,
)


# -- reading a step's results -----------------------------------------------------------

def read_junit(path: str) -> dict:
    """Counts of a pytest ``--junitxml`` file: tests, passed, failed, errors, skipped,
    and the ids of the tests that failed or erred."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else list(root.iter('testsuite'))
    counts = dict(tests=0, failed=0, errors=0, skipped=0)
    failing = []
    for suite in suites:
        counts['tests'] += int(suite.get('tests', 0))
        counts['failed'] += int(suite.get('failures', 0))
        counts['errors'] += int(suite.get('errors', 0))
        counts['skipped'] += int(suite.get('skipped', 0))
        for case in suite.iter('testcase'):
            if case.find('failure') is not None or case.find('error') is not None:
                failing.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    counts['passed'] = counts['tests'] - counts['failed'] - counts['errors'] - counts['skipped']
    counts['failing'] = failing
    return counts


_MAP = re.compile(r'coco/bbox_mAP: (-?[0-9.]+)')


def last_bbox_map(log_path: str) -> Optional[float]:
    """The last ``coco/bbox_mAP`` an mmdet log line printed, if any."""
    try:
        with open(log_path, errors='replace') as f:
            found = _MAP.findall(f.read())
    except OSError:
        return None
    return float(found[-1]) if found else None


def summarize(step: Step, log_path: str) -> dict:
    """What the report shows of a finished step, read from its files; ``ok`` is False
    when the files contradict a zero exit status (no checkpoint, no mAP, no rows)."""
    if step.kind == 'environment':
        with open(osp.join(step.out_dir, 'environment.json')) as f:
            env = json.load(f)
        return dict(ok='backends' in env, environment=env)
    if step.kind == 'tests':
        counts = read_junit(osp.join(step.out_dir, 'junit.xml'))
        return dict(ok=counts['tests'] > 0 and not counts['failed'] and not counts['errors'],
                    **counts)
    if step.kind in ('ops', 'model', 'overhead'):
        with open(osp.join(step.out_dir, 'results.json')) as f:
            saved = json.load(f)
        return dict(ok=bool(saved['rows']) and not saved.get('partial'), machine=saved['machine'],
                    rows=saved['rows'], partial=bool(saved.get('partial')),
                    **({'ceilings': saved['ceilings']} if 'ceilings' in saved else {}))
    if step.kind == 'train':
        ckpt = osp.join(step.out_dir, 'epoch_1.pth')
        return dict(ok=osp.isfile(ckpt), checkpoint=ckpt if osp.isfile(ckpt) else None,
                    val_bbox_mAP=last_bbox_map(log_path))
    if step.kind == 'test':
        value = last_bbox_map(log_path)
        return dict(ok=value is not None, test_bbox_mAP=value)
    return dict(ok=True)


def run_step(step: Step, out_dir: str, timeout_s: float, cwd: str, env: Dict[str, str],
             log: Callable[[str], None] = _no_log) -> dict:
    """Run one step and read its results; never raises for the step's own failures."""
    log_rel = osp.join('logs', f'{step.name}.log')
    log_path = osp.join(out_dir, log_rel)
    if step.out_dir:
        os.makedirs(step.out_dir, exist_ok=True)
    rc, timed_out, seconds = run_command(step.argv, log_path, timeout_s, cwd, env, log)
    result = dict(name=step.name, title=step.title, kind=step.kind,
                  command=shlex.join(step.argv),
                  budget_s=step.budget_s, timeout_s=round(timeout_s, 1), seconds=round(seconds, 1),
                  rc=rc, log=log_rel)
    if timed_out:
        result.update(status='timeout', reason=f'stopped at its time limit ({timeout_s:.0f} s)')
    elif rc != 0:
        why = f'killed by {_signal_name(rc)}' if rc < 0 else f'exit status {rc}'
        last = _last_line(log_path)
        result.update(status='failed', reason=why + (f'; last line: {last}' if last else ''))
    else:
        result['status'] = 'passed'
    # A stopped op benchmark saved what it measured, stopped tests their junit file.
    kept = step.kind == 'ops' or (step.kind == 'tests' and osp.isfile(
        osp.join(step.out_dir or '', 'junit.xml')))
    if not timed_out or kept:
        try:
            summary = summarize(step, log_path)
        except (OSError, ValueError, KeyError, ET.ParseError) as e:
            summary = dict(ok=False, summary_error=f'{type(e).__name__}: {e}')
            with open(log_path, 'a') as f:
                f.write('\n[gpu-check] reading the results failed:\n' + traceback.format_exc())
        ok = summary.pop('ok')
        result['summary'] = summary
        if timed_out and summary.get('rows'):
            result['reason'] += f"; kept the {len(summary['rows'])} rows measured before"
        if timed_out and summary.get('tests'):
            result['reason'] += (f"; {summary['tests']} tests ran before: "
                                 f"{summary['passed']} passed, {summary['failed']} failed, "
                                 f"{summary['errors']} errors, {summary['skipped']} skipped")
        if result['status'] == 'passed' and not ok:
            result.update(status='failed', reason='exit status 0, but its results are missing '
                          'or failing: ' + json.dumps(summary)[:300])
    return result


# -- the whole check --------------------------------------------------------------------

def run_gpu_check(out_dir: str, steps: Sequence[Step], root: str,
                  budget_s: float = DEFAULT_BUDGET_S, log: Callable[[str], None] = print,
                  runner: Callable[..., dict] = run_step,
                  clock: Callable[[], float] = time.monotonic) -> dict:
    """Run ``steps`` in order within ``budget_s`` seconds; write the report after each.

    A step gets ``min(step.budget_s, what is left)`` seconds; with less than
    :data:`MIN_STEP_S` left, or when a step it ``needs`` did not pass, it is skipped
    and says why.

    Args:
        runner: ``runner(step, out_dir, timeout_s, cwd, env, log)`` -> result dict
            (default :func:`run_step`; tests pass cheap fakes).
        clock: seconds, for the budget.

    Returns:
        the state written to ``gpu_check.json``.
    """
    if not budget_s > 0:
        raise ValueError(f'budget_s: expected a positive number of seconds, got {budget_s!r}')
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f'steps: expected unique names, got {names}')
    os.makedirs(osp.join(out_dir, 'logs'), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1',
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get('PYTHONPATH')) if p))
    start = clock()
    state = dict(started=_now(), finished=None, budget_s=budget_s, wall_s=0.0, root=root,
                 environment=None, steps=[])
    write_report(state, out_dir)
    status: Dict[str, str] = {}
    for i, step in enumerate(steps):
        left = budget_s - (clock() - start)
        missing = [n for n in step.needs if status.get(n) != 'passed']
        log(f'[gpu-check] {i + 1}/{len(steps)} {step.name}: {step.title}')
        if missing:
            result = dict(name=step.name, title=step.title, status='skipped',
                          reason=f'needs {", ".join(missing)}, which did not pass')
        elif left < MIN_STEP_S:
            result = dict(name=step.name, title=step.title, status='skipped',
                          reason=f'out of the total time budget ({left:.0f} s left of '
                          f'{budget_s:.0f} s)')
        else:
            result = runner(step, out_dir, min(step.budget_s, left), root, env, log)
        status[step.name] = result['status']
        if step.kind == 'environment' and result.get('summary', {}).get('environment'):
            state['environment'] = result['summary'].pop('environment')
            for key, value in state['environment'].items():
                log(f'  {key}: {value}')
        state['steps'].append(result)
        state['wall_s'] = round(clock() - start, 1)
        write_report(state, out_dir)
        log(f'[gpu-check]   {result["status"]}' + (f' in {result["seconds"]} s'
                                                   if 'seconds' in result else '')
            + (f': {result["reason"]}' if result.get('reason') else ''))
    state['finished'] = _now()
    state['wall_s'] = round(clock() - start, 1)
    write_report(state, out_dir)
    counts = {s: sum(r['status'] == s for r in state['steps']) for s in STATUSES}
    log(f'[gpu-check] done in {state["wall_s"]} s: '
        + ', '.join(f'{n} {s}' for s, n in counts.items() if n)
        + f'; report: {osp.join(out_dir, REPORT)}')
    return state


def write_report(state: dict, out_dir: str) -> None:
    """``gpu_check.json`` (the state) and ``report.md`` (:func:`render_report`)."""
    write_text_atomic(osp.join(out_dir, RESULTS), json.dumps(state, indent=2, default=str) + '\n')
    write_text_atomic(osp.join(out_dir, REPORT), render_report(state))


def _env_lines(env: Optional[dict]) -> List[str]:
    if not env:
        return ['The environment was not collected (see the `environment` step).', '']
    tf32 = env.get('tf32', {})
    rows = [('date', env.get('date')), ('commit', env.get('commit')),
            ('GPU', f"{env.get('gpu')} x{env.get('gpu_count')} (sm {env.get('gpu_capability')}, "
                    f"{env.get('gpu_memory_gib')} GiB), driver {env.get('driver')}"),
            ('CPU', env.get('cpu')),
            ('Python / torch', f"{env.get('python')} / {env.get('torch')} (CUDA "
                               f"{env.get('torch_cuda')}, cuDNN {env.get('cudnn')}); "
                               f"{env.get('nvcc')}"),
            ('mmcv / mmengine / mmdet', f"{env.get('mmcv')} / {env.get('mmengine')} / "
                                        f"{env.get('mmdet')}"),
            ('torchvision / triton / numpy', f"{env.get('torchvision')} / {env.get('triton')} / "
                                             f"{env.get('numpy')}"),
            ('TF32', f"cudnn.allow_tf32={tf32.get('cudnn_allow_tf32')}, "
                     f"matmul.allow_tf32={tf32.get('matmul_allow_tf32')}, "
                     f"cudnn.benchmark={tf32.get('cudnn_benchmark')}")]
    for device, table in (env.get('backends') or {}).items():
        table = dict(table)
        probes = table.pop('probes', None)
        rows.append((f'backends on {device}', '; '.join(f'{k}: {v[:80]}'
                                                        for k, v in table.items())))
        if probes:  # why 'auto' passed a backend over: whole
            rows.append((f'failed probes on {device}', probes))
    return ['| | |', '|---|---|'] + [f"| {k} | {str(v).replace('|', '/')} |"
                                     for k, v in rows] + ['']


def render_report(state: dict) -> str:
    """The Markdown report of a (possibly unfinished) check."""
    from .model import model_table
    from .floor import Ceilings
    from .ops_report import ops_summary, ops_table
    from .overhead import overhead_table
    env = state.get('environment') or {}
    done = state.get('finished')
    lines = [f"# GPU check: {env.get('gpu', 'GPU unknown')}, {env.get('date', state['started'])}",
             '',
             f"Started {state['started']}; " + (f"finished {done}" if done else
                                                 '**not finished** (written after every step)')
             + f"; {state['wall_s']} s of a {state['budget_s']:.0f} s budget.", '']
    lines += _env_lines(state.get('environment'))
    lines += ['## Steps', '', '| step | status | seconds | note | log |', '|---|---|---|---|---|']
    for r in state['steps']:
        note = (r.get('reason') or '').replace('|', '/')[:200]
        lines.append(f"| {r['name']} | {r['status']} | {r.get('seconds', '')} | {note} | "
                     f"{r.get('log', '')} |")
    lines.append('')
    for r in state['steps']:
        summary = r.get('summary') or {}
        kind = r.get('kind', '')
        if kind == 'tests' and 'tests' in summary:
            lines += [f"## {r['title']}", '', f"{summary['passed']} passed, {summary['failed']} "
                      f"failed, {summary['errors']} errors, {summary['skipped']} skipped "
                      f"({summary['tests']} in all).", '']
            if summary['failing']:
                lines += [f'- failing: `{t}`' for t in summary['failing']] + ['']
        elif summary.get('rows') and kind == 'ops':
            partial = (' **Partial: the step stopped before its last shape.**'
                       if summary.get('partial') else '')
            lines += [f"## {r['title']}", '', f"`{summary['machine']}`{partial}", '']
            if summary.get('ceilings'):
                lines += [Ceilings(**summary['ceilings']).describe() + '; the floor of a row '
                          'is the least time its work can take at them', '']
            lines += [ops_table(summary['rows']), '']
            text = ops_summary(summary['rows'])
            lines += [text, ''] if text else []
        elif summary.get('rows') and kind == 'overhead':
            lines += [f"## {r['title']}", '', f"`{summary['machine']}`", '',
                      overhead_table(summary['rows']), '']
        elif summary.get('rows') and kind == 'model':
            lines += [f"## {r['title']}", '', f"`{summary['machine']}`", '',
                      model_table(summary['rows']), '']
        elif kind in ('train', 'test') and summary:
            value = summary.get('val_bbox_mAP', summary.get('test_bbox_mAP'))
            lines += [f"## {r['title']}", '', f'bbox mAP: {value} ({r["status"]}; one epoch of '
                      'a smoke run on synthetic data: it shows the pipeline works, not '
                      'accuracy).', '']
    return '\n'.join(lines).rstrip('\n') + '\n'
