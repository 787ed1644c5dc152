"""Check a GPU machine end to end, in one call, and write one report.

    python tools/gpu_check.py --out-dir D [--budget-s 390] [--steps NAME ...] [--skip NAME ...]
    python tools/gpu_check.py --list

Prints the environment, runs the CUDA tests, trains and tests the quick-start DCNv2
detector for one epoch (``tools/train.py``, ``tools/test.py``), times the op in
float32, float16 and bfloat16 against a cuDNN conv, mmcv's raw kernel and torchvision
(``tools/benchmark.py ops --device cuda``), and times full-size Faster R-CNN training
steps in fp32 and AMP (``tools/benchmark.py model --device cuda``).  Each step runs in
a process of its own within its time budget, and all of them within ``--budget-s``;
``D/report.md``, ``D/gpu_check.json`` and ``D/logs/`` are rewritten after every step,
so a step that fails (or a check cut short) loses nothing.  ``make gpu-check`` runs
it; ``docs/gpu/README.md`` says how on a lent machine (``tools/gpu_device_run.sh``).
The work is done by :mod:`mmdcn_plugin.benchmark.gpu_check`.

Exit status: 0 when every step selected passed, 1 otherwise.
"""
import argparse
import os.path as osp
import sys
import tempfile

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def step_names():
    from mmdcn_plugin.benchmark.gpu_check import default_steps
    return [s.name for s in default_steps(ROOT, 'OUT', 'WORK')]


def parse_args(argv=None):
    from mmdcn_plugin.benchmark.gpu_check import DEFAULT_BUDGET_S, DEFAULT_TESTS
    names = step_names()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out-dir', help='where report.md, gpu_check.json and logs/ go')
    parser.add_argument('--work-dir', help='scratch space for the synthetic data and '
                        'checkpoints (default: a temporary folder, removed at the end)')
    parser.add_argument('--budget-s', type=float, default=DEFAULT_BUDGET_S,
                        help=f'seconds for all steps together (default: {DEFAULT_BUDGET_S:.0f})')
    parser.add_argument('--steps', nargs='+', metavar='NAME',
                        help=f'run only these steps, in the usual order (of: {", ".join(names)})')
    parser.add_argument('--skip', nargs='+', default=[], metavar='NAME', help='steps to leave out')
    parser.add_argument('--tests', nargs='+', default=list(DEFAULT_TESTS),
                        help='test files for the tests step (default: %(default)s)')
    for option, default, what in (('--op-repeat', 10, 'timed repetitions of each op candidate'),
                                  ('--model-iters', 5, 'timed iterations of each detector')):
        parser.add_argument(option, type=int, default=default, help=f'{what} (default: {default})')
    parser.add_argument('--list', action='store_true', help='print the steps and exit')
    args = parser.parse_args(argv)
    if not args.list and not args.out_dir:
        parser.error('--out-dir: expected a folder for the report, got nothing')
    if not args.budget_s > 0:
        parser.error(f'--budget-s: expected a positive number of seconds, got {args.budget_s}')
    for name in ('op_repeat', 'model_iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")}: expected >= 1, got {getattr(args, name)}')
    for option, given in (('--steps', args.steps or []), ('--skip', args.skip)):
        unknown = [n for n in given if n not in names]
        if unknown:
            parser.error(f'{option}: expected step names among {names}, got {unknown}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmdcn_plugin.benchmark.gpu_check import default_steps, run_gpu_check, select_steps
    with tempfile.TemporaryDirectory(prefix='mmdcn-gpu-check-') as tmp:
        work_dir = args.work_dir or tmp
        out_dir = osp.abspath(args.out_dir or 'OUT')
        steps = select_steps(default_steps(ROOT, out_dir, osp.abspath(work_dir),
                                           python=sys.executable, tests=args.tests,
                                           op_repeat=args.op_repeat,
                                           model_iters=args.model_iters),
                             args.steps, args.skip)
        if args.list:
            for step in steps:
                print(f'{step.name} ({step.budget_s:.0f} s): {" ".join(step.argv)}')
            return 0
        state = run_gpu_check(out_dir, steps, ROOT, budget_s=args.budget_s)
    return 0 if all(r['status'] == 'passed' for r in state['steps']) else 1


if __name__ == '__main__':
    sys.exit(main())
