"""The robustness study: does deformable convolution buy geometric robustness?

    python tools/study.py                   # the full grid (what `make study` runs)
    python tools/study.py --max-runs 1      # train the next unfinished run only
    python tools/study.py --quick           # a tiny-schedule version (used by the tests)
    python tools/study.py --report-only     # rebuild the report from the finished runs
    python tools/study.py --levels none,moderate,strong --variants baseline,dcnv2 \
        --offset-recipes slow,ramp          # the deformation study (docs/study-deformation)

Trains every variant of the quick-start Faster R-CNN (plain conv baseline, DCNv1,
DCNv2 + ConvOffsetHead, DCNv2 + SeparableOffsetHead) with every seed (0-4) in two
arms: (a) on untransformed images, (b) with random rotation, scale and shear as
augmentation.  The schedule and image counts are the quick-start base config's
(``configs/quickstart/faster-rcnn_r50-narrow_fpn_synthetic.py``); the study adds only
the seed, its data root and arm (b)'s augmentation.  Each final checkpoint is
evaluated with MMDetection's COCO metric on the val split rotated by 0-180 degrees
(step 30), scaled by 0.5-2 and sheared by -30..30 degrees; for DCN in arm (a), the
fraction of the sampling locations on the object is measured per stage along the
rotation sweep.

Resumable: a finished run writes ``DOCS_DIR/runs/<arm>/<variant>/seed<k>.json`` (commit
it) and is never redone; an interrupted run continues from its checkpoint in
``OUT_DIR/work/`` (``tools/train.py --resume``).  A run's JSON holds: ``schema``, ``arm``,
``variant``, ``seed``, ``config``, ``recipe_config``, ``recipe``, ``overrides``,
``run_config``, ``date``, ``machine``, ``threads``, ``jobs``, ``iterations``,
``sec_per_iter``, ``peak_rss_mb``, ``train_wall_s``, ``eval_wall_s``, ``wall_s``,
``checkpoint``, ``val_curve`` ([step, bbox_mAP] pairs), ``final`` (the last validation's
metrics), ``sweeps`` (transform -> rows of value, bbox_mAP, mAP50, mAP75, bbox_mAP_s,
bbox_mAP_m, n_instances), ``on_object`` (rows of value, stage, instances, points,
deformable, regular; null for the baseline and arm (b)) and ``offsets`` (the last
``OffsetStatsHook`` record: step, and per layer mean_px, max_px, outside_frac, mask_mean;
null for the baseline).

``--levels`` makes it the deformation study: arm (a) on one generated dataset per
deformation level (train and val alike), the level in the run paths
(``runs/a/<level>/<variant>/seed<k>.json``), its own ``work_dirs/study-deformation`` and
``docs/study-deformation``; a run also records ``level`` and ``offset_recipe``, and its
finished ``moderate`` runs that are the same run as one of ``docs/study`` are taken over
from there (``adopted_from``).  ``--offset-recipes`` trains each deformable variant with
each offset recipe (``mmdcn_plugin.study.constants.OFFSET_RECIPES``); another recipe than
``slow`` names the variant ``<variant>+<recipe>``.

Report (``DOCS_DIR``): ``results.md``, ``results.csv`` (one row per arm, variant,
transform and value), ``summary.json`` and ``robustness_<transform>.png``.  The work
is done by :mod:`mmdcn_plugin.study`.
"""
import argparse
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _list(kind):
    def parse(text):
        items = [t.strip() for t in text.split(',') if t.strip()]
        return [kind(t) for t in items]
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='tiny schedule (2 iterations, 8 train / 4 val images), baseline '
                        'and dcnv2, seed 0, sparser sweeps')
    parser.add_argument('--arms', type=_list(str), default=None, help='e.g. a,b (default)')
    parser.add_argument('--variants', type=_list(str), default=None,
                        help='comma-separated, among baseline,dcnv1,dcnv2,dcnv2-sep')
    parser.add_argument('--seeds', type=_list(int), default=None, help='e.g. 0,1,2,3,4')
    parser.add_argument('--levels', type=_list(str), default=None,
                        help='deformation levels, among none,moderate,strong: one dataset '
                        'each (the deformation study; default arms: a)')
    parser.add_argument('--offset-recipes', type=_list(str), default=None,
                        help='offset recipes of the deformable variants, among '
                        'slow,full,ramp,late (default: slow, the quick-start recipe)')
    parser.add_argument('--epochs', type=int, default=None,
                        help="train this many epochs instead of the recipe's; the LR drops "
                        'at the same fractions of training. Its runs are another study: '
                        'their own default --out-dir and --docs-dir (…-e<N>)')
    parser.add_argument('--out-dir', default=None,
                        help='datasets, splits and work dirs (default: work_dirs/study, '
                        'work_dirs/study-e<N> with --epochs, work_dirs/study-quick with '
                        '--quick)')
    parser.add_argument('--docs-dir', default=None,
                        help='runs/ (one JSON per run) and the report (default: docs/study, '
                        'docs/study-e<N> with --epochs; with --quick: OUT_DIR/report)')
    cores = os.cpu_count() or 1
    parser.add_argument('--jobs', type=int, default=2 if cores >= 2 else 1,
                        help='runs at the same time (default: 2 on >= 2 cores)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads per run (default: cores // jobs, at least 1)')
    parser.add_argument('--max-runs', type=int, default=None,
                        help='train at most this many unfinished runs, then report')
    parser.add_argument('--report-only', action='store_true',
                        help='train nothing; rebuild the report from the finished runs')
    args = parser.parse_args(argv)
    if args.epochs is not None and args.quick:
        parser.error(f'--epochs: not with --quick (a schedule of its own), got --epochs '
                     f'{args.epochs}')
    for name in ('jobs', 'threads', 'max_runs', 'epochs'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {value}')
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    from mmdcn_plugin.study import StudySetup, build_report, collect, read_recipe, run_grid
    from mmdcn_plugin.study.progress import log
    name = 'study-quick' if args.quick else (
        f'study-e{args.epochs}' if args.epochs else 'study')
    if args.levels:
        name += '-deformation'
        args.arms = args.arms or ['a']
    out_dir = osp.abspath(args.out_dir or osp.join(ROOT, 'work_dirs', name))
    docs_dir = osp.abspath(args.docs_dir or (
        osp.join(out_dir, 'report') if args.quick else osp.join(ROOT, 'docs', name)))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    grid = dict(arms=args.arms, variants=args.variants, seeds=args.seeds, jobs=args.jobs,
                threads=threads, levels=args.levels, offset_recipes=args.offset_recipes)
    try:
        recipe = read_recipe(quick=args.quick, epochs=args.epochs)
        if args.quick:
            setup = StudySetup.quick(recipe, out_dir, docs_dir, **grid)
        else:
            setup = StudySetup(recipe, out_dir, docs_dir,
                               **{k: v for k, v in grid.items() if v is not None})
    except ValueError as e:
        parser.error(str(e))
    start = time.time()
    # The deformation study takes over the one-level study's finished moderate runs.
    adopt = osp.join(ROOT, 'docs', name[:-len('-deformation')]) \
        if args.levels and not args.quick and args.docs_dir is None else None
    failed = [] if args.report_only else run_grid(setup, args.max_runs, adopt)
    results = collect(setup)
    if not results:
        raise SystemExit(f'study: no finished run under {docs_dir}/runs')
    if setup.levels:
        from mmdcn_plugin.study.deformation import build_deformation_report
        report = build_deformation_report(setup, results)
    else:
        report = build_report(setup, results)
    log(f'report: {report} ({len(results)} of {len(setup.runs())} runs; '
        f'{time.time() - start:.0f} s this call)')
    if failed:
        raise SystemExit('study: these runs failed (their logs are in their work dirs; run '
                         'the command again to retry): ' + ', '.join(r.name for r in failed))


if __name__ == '__main__':
    try:
        main()
    except ValueError as e:
        sys.exit(f'study.py: error: {e}')
