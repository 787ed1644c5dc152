"""From the runs' JSONs to the study's numbers: cells over seeds, curve areas, pairs.

Every number is over the seeds a cell has, whatever the grid still lacks: ``n`` says
how many, and an interval needs two.
"""
import statistics
from typing import Dict, List, Sequence

from .constants import STAGES
from .stats import curve_area, paired_difference, summarize, welch_difference


def check_same_recipe(results: Sequence[dict]) -> None:
    """Raise ValueError unless every run was trained with one recipe and one sweep."""
    def key(r):
        return (r['recipe'], {t: [row['value'] for row in rows] for t, rows in r['sweeps'].items()})
    first = key(results[0])
    other = [f'{r["arm"]}/{r["variant"]}/seed{r["seed"]}' for r in results if key(r) != first]
    if other:
        raise ValueError(f'results: expected one recipe and one sweep for every run (those of '
                         f'{results[0]["arm"]}/{results[0]["variant"]}/seed{results[0]["seed"]}:'
                         f' {first[0]}); these runs differ: {other}. Move them away or '
                         'retrain them')


def run_areas(result: dict) -> Dict[str, float]:
    """transform -> the run's bbox mAP curve area over the sweep (a mean mAP)."""
    out = {}
    for transform, rows in result['sweeps'].items():
        rows = sorted(rows, key=lambda r: r['value'])
        out[transform] = curve_area([r['value'] for r in rows], [r['bbox_mAP'] for r in rows])
    return out


def on_object_gaps(result: dict, stage: str):
    """One run's (upright, rotated) gaps at ``stage``: the learned-offset fraction on the
    object minus the regular grid's, at 0 degrees and averaged over the other rotations
    (None for either part the run lacks; None if the run has no row for ``stage``).

    A positive rotated gap means the offsets still land on the object as it turns.
    """
    rows = [row for row in result.get('on_object') or [] if row['stage'] == stage]
    if not rows:
        return None
    gap = {row['value']: row['deformable'] - row['regular'] for row in rows}
    turned = [g for v, g in gap.items() if v % 360 != 0]
    return gap.get(0), (statistics.mean(turned) if turned else None)


def offset_magnitudes(results: Sequence[dict], arms: Sequence[str],
                      variants: Sequence[str]) -> List[dict]:
    """How far the trained offsets move, per arm, variant and stage, over seeds.

    From each run's last ``OffsetStatsHook`` record (``offsets``; runs without one are
    skipped): ``mean_px`` is the mean of its layers' mean |offset| (px of the layer's
    input map), ``max_px`` the largest of its layers' maxima, ``outside_frac`` and
    ``mask_mean`` (DCNv2) the means over its layers; each summarized over seeds.
    """
    from ..robustness.on_object import stage_of
    out = []
    for arm in arms:
        for variant in variants:
            per_stage = {}
            for r in results:
                if (r['arm'], r['variant']) != (arm, variant) or not r.get('offsets'):
                    continue
                layers = r['offsets']['layers']
                for stage in STAGES:
                    stats = [v for k, v in layers.items() if stage_of(k) == stage]
                    if stats:
                        per_stage.setdefault(stage, []).append(dict(
                            mean_px=statistics.mean(x['mean_px'] for x in stats),
                            max_px=max(x['max_px'] for x in stats),
                            outside_frac=statistics.mean(x['outside_frac'] for x in stats),
                            mask_mean=(statistics.mean(x['mask_mean'] for x in stats)
                                       if all('mask_mean' in x for x in stats) else None)))
            for stage, rows in per_stage.items():
                out.append(dict(arm=arm, variant=variant, stage=stage, **{
                    key: summarize([row[key] for row in rows])
                    for key in ('mean_px', 'max_px', 'outside_frac', 'mask_mean')}))
    return out


def augmentation_effects(per_seed: Dict[tuple, Dict[int, Dict[str, float]]],
                         variants: Sequence[str]) -> List[dict]:
    """Does training with the transforms (arm (b)) change a variant, and its gap to the
    baseline?  Arm (b) minus arm (a), per variant and measure, over independent models,
    so Welch's interval (:func:`~.stats.welch_difference`), not a paired one.

    Args:
        per_seed: ``(arm, variant) -> seed -> measure -> value`` (the measures:
            ``untransformed`` and each transform's curve area).
        variants: the order of the output.

    Returns:
        list of dict: ``variant``, ``measure``, ``b_minus_a`` (the variant's own change)
        and, for a DCN variant, ``gap_change``: its per-seed difference from the baseline
        in arm (b) minus the same in arm (a).  Negative ``gap_change``: training with the
        transforms closes (part of) the DCN variant's lead.
    """
    def gaps(mine, base, measure):
        return [mine[s][measure] - base[s][measure] for s in mine if s in base]

    base_a, base_b = per_seed.get(('a', 'baseline')), per_seed.get(('b', 'baseline'))
    out = []
    for variant in variants:
        a, b = per_seed.get(('a', variant)), per_seed.get(('b', variant))
        if not a or not b:
            continue
        for measure in next(iter(a.values())):
            entry = dict(variant=variant, measure=measure, b_minus_a=welch_difference(
                [v[measure] for v in b.values()], [v[measure] for v in a.values()]))
            if variant != 'baseline' and base_a and base_b:
                entry['gap_change'] = welch_difference(gaps(b, base_b, measure),
                                                       gaps(a, base_a, measure))
            out.append(entry)
    return out


def machine_of(result: dict) -> str:
    """The machine line a run trained on (``'?'`` if it has none): timings group by it."""
    return result.get('machine') or '?'


def _cost(rs: Sequence[dict], variant: str, machine: str) -> dict:
    """One variant's timings on one machine: medians over its runs, and their sum."""
    def median(key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return statistics.median(vals) if vals else None
    return dict(variant=variant, machine=machine, runs=len(rs),
                arms=sorted({r['arm'] for r in rs}), sec_per_iter=median('sec_per_iter'),
                train_wall_s=median('train_wall_s'), wall_s=median('wall_s'),
                peak_rss_mb=median('peak_rss_mb'), total_wall_s=sum(r['wall_s'] for r in rs))


def _by_cell(results: Sequence[dict]) -> Dict[tuple, List[dict]]:
    cells = {}
    for r in results:
        cells.setdefault((r['arm'], r['variant']), []).append(r)
    return cells


def aggregate(results: Sequence[dict], arms: Sequence[str], variants: Sequence[str]) -> dict:
    """The study's summary numbers.

    Returns:
        dict: ``untransformed`` (per arm and variant: the final validation's bbox mAP,
        and for a DCN variant ``vs_baseline``, its difference paired by training seed),
        ``curves`` (per arm, variant, transform and value: bbox mAP, mAP50 and mAP75
        over seeds), ``areas`` (per arm, variant and transform: the curve area, and for
        a DCN variant ``vs_baseline``, its difference from the baseline paired by
        training seed), ``on_object`` (per variant, stage and rotation: the deformable
        and regular-grid fractions and their per-run ``gap``), ``on_object_gap`` (per
        variant and stage: learned minus grid fraction, per seed, upright and averaged
        over the rotated values; see :func:`on_object_gaps`), ``offsets`` (see
        :func:`offset_magnitudes`) and ``cost`` (per machine and variant: s/iter, wall
        time, peak RSS; medians over its runs there, as timings compare only on one
        machine) and ``augmentation`` (arm (b) against arm (a);
        see :func:`augmentation_effects`).  Each statistic is
        :func:`~.stats.summarize`'s dict.
    """
    cells = _by_cell(results)
    out = dict(untransformed=[], curves=[], areas=[], on_object=[], on_object_gap=[],
               offsets=offset_magnitudes(results, arms, variants), cost=[])
    areas = {key: {r['seed']: run_areas(r) for r in rs} for key, rs in cells.items()}
    for arm in arms:
        for variant in variants:
            rs = cells.get((arm, variant), [])
            if not rs:
                continue
            final = {r['seed']: r['final']['bbox_mAP'] for r in rs}
            entry = dict(arm=arm, variant=variant, seeds=sorted(final),
                         bbox_mAP=summarize(list(final.values())))
            base = cells.get((arm, 'baseline'))
            if variant != 'baseline' and base:
                entry['vs_baseline'] = paired_difference(
                    final, {r['seed']: r['final']['bbox_mAP'] for r in base})
            out['untransformed'].append(entry)
            for transform in rs[0]['sweeps']:
                for i, row in enumerate(sorted(rs[0]['sweeps'][transform],
                                               key=lambda r: r['value'])):
                    at = [next(x for x in r['sweeps'][transform] if x['value'] == row['value'])
                          for r in rs]
                    out['curves'].append(dict(
                        arm=arm, variant=variant, transform=transform, value=row['value'],
                        **{m: summarize([x[m] for x in at])
                           for m in ('bbox_mAP', 'mAP50', 'mAP75')}))
                mine = {seed: a[transform] for seed, a in areas[(arm, variant)].items()}
                entry = dict(arm=arm, variant=variant, transform=transform,
                             area=summarize(list(mine.values())))
                base = areas.get((arm, 'baseline'))
                if variant != 'baseline' and base:
                    entry['vs_baseline'] = paired_difference(
                        mine, {seed: a[transform] for seed, a in base.items()})
                out['areas'].append(entry)
    for variant in variants:
        rs = [r for r in cells.get(('a', variant), []) if r.get('on_object')]
        values = sorted({row['value'] for r in rs for row in r['on_object']})
        for stage in STAGES:
            for value in values:
                rows = [row for r in rs for row in r['on_object']
                        if row['stage'] == stage and row['value'] == value]
                if rows:
                    out['on_object'].append(dict(
                        variant=variant, stage=stage, value=value,
                        deformable=summarize([row['deformable'] for row in rows]),
                        regular=summarize([row['regular'] for row in rows]),
                        gap=summarize([row['deformable'] - row['regular'] for row in rows])))
        for stage in STAGES:
            gaps = [g for g in (on_object_gaps(r, stage) for r in rs) if g is not None]
            if gaps:
                out['on_object_gap'].append(dict(
                    variant=variant, stage=stage,
                    upright=summarize([g[0] for g in gaps]),
                    rotated=summarize([g[1] for g in gaps])))
    measures = {key: {r['seed']: dict(untransformed=r['final']['bbox_mAP'],
                                      **areas[key][r['seed']]) for r in rs}
                for key, rs in cells.items()}
    out['augmentation'] = augmentation_effects(measures, variants)
    for machine in sorted({machine_of(r) for r in results}):
        for variant in variants:
            rs = [r for r in results if r['variant'] == variant and machine_of(r) == machine]
            if rs:
                out['cost'].append(_cost(rs, variant, machine))
    return out
