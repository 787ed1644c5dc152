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
deformation strength per variant, mean and std over seeds).  The work is done by
:mod:`mmdcn_plugin.study`.
"""
import argparse
import os
import os.path as osp
import sys
import time

from mmdcn_plugin.study import (GRID_KEYS, LEVELS, VARIANTS, StudySetup, build_report,
                                collect, make_grid, run_grid)
from mmdcn_plugin.study.grid import log

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


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
    if args.jobs < 1:
        parser.error(f'--jobs must be >= 1, got {args.jobs}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    name = 'quick' if args.quick else 'full'
    try:
        grid = make_grid(name, **{key: getattr(args, key) for key in GRID_KEYS})
    except ValueError as e:
        parser.error(str(e))
    out_dir = osp.abspath(args.out_dir or osp.join(
        ROOT, 'work_dirs', 'study-quick' if args.quick else 'study'))
    docs_dir = osp.abspath(args.docs_dir or (
        osp.join(out_dir, 'report') if args.quick else osp.join(ROOT, 'docs', 'study')))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    setup = StudySetup(grid=grid, grid_name=name, out_dir=out_dir, docs_dir=docs_dir,
                       jobs=args.jobs, threads=threads)
    return args, setup


def main(argv=None):
    args, setup = parse_args(argv)
    start = time.time()
    failed = [] if args.report_only else run_grid(setup)
    results = collect(setup)
    if not results:
        raise SystemExit(f'study: no finished run under {setup.out_dir}')
    report = build_report(setup, results)
    log(f'report: {report} ({len(results)} runs; {time.time() - start:.0f} s this call)')
    if failed:
        raise SystemExit('study: these runs failed (their logs are in their folders; run '
                         'the command again to retry): ' + ', '.join(r.name for r in failed))


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f'study.py: error: {e}')
