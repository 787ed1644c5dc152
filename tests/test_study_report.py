"""mmdcn_plugin.study.records and .report: what a run's logs say, and the report of a
partial grid."""
import json

import pytest

from mmdcn_plugin import study
from mmdcn_plugin.study import (StudySetup, aggregate,
                                build_report, read_recipe)
from study_helpers import fake_run


def test_offset_stats_records_are_not_validations(tmp_path):
    # OffsetStatsHook's records carry only offset_stats/... and a step: once they were
    # read as validations that detected nothing (zeros at steps 50, 100, ... of the curve).
    from mmdcn_plugin.study.records import read_offset_stats, read_scalars, val_curve
    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    recs = [{'loss': 1.0, 'lr': 1e-3, 'time': 0.5, 'step': 10},
            {'offset_stats/backbone.layer4.0.conv2/mean_px': 0.1,
             'offset_stats/backbone.layer4.0.conv2/max_px': 2.0, 'step': 50},
            {'coco/bbox_mAP': 0.3, 'time': 0.2, 'step': 1},
            {'offset_stats/backbone.layer4.0.conv2/mean_px': 0.25,
             'offset_stats/backbone.layer4.0.conv2/max_px': 3.0,
             'offset_stats/backbone.layer4.0.conv2/mask_mean': 0.5, 'step': 100},
            {'time': 0.2, 'step': 2}]        # a validation with no detections at all
    (vis / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in recs) + '\n')
    train, val = read_scalars(str(tmp_path))
    assert len(train) == 1 and [r['step'] for r in val] == [1, 2]
    assert val_curve(val) == [[1, 0.3], [2, 0.0]]
    assert read_offset_stats(str(tmp_path)) == dict(step=100, layers={
        'backbone.layer4.0.conv2': dict(mean_px=0.25, max_px=3.0, mask_mean=0.5)})
    (vis / 'scalars.json').write_text(json.dumps(recs[0]) + '\n')
    assert read_offset_stats(str(tmp_path)) is None


def test_report_of_a_partial_grid(tmp_path):
    recipe = read_recipe(quick=True)
    setup = StudySetup(recipe, str(tmp_path), str(tmp_path / 'docs'), arms=('a', 'b'),
                       variants=('baseline', 'dcnv2'), seeds=(0, 1, 2),
                       sweeps=dict(rotate=(0, 90, 180)), on_object_images=2)
    levels = {('baseline', 0): 0.4, ('baseline', 1): 0.5, ('dcnv2', 0): 0.5,
              ('dcnv2', 1): 0.7, ('dcnv2', 2): 0.9}
    results = [fake_run('a', v, s, lv, recipe) for (v, s), lv in levels.items()]
    results.append(fake_run('b', 'dcnv2', 0, 0.3, recipe, machine='fast; 2 cores',
                             sec_per_iter=0.2))
    summary = aggregate(results, setup.arms, setup.variants)
    areas = {(e['arm'], e['variant']): e for e in summary['areas']}
    # The area of a line from L to 0 is L / 2; dcnv2 pairs with the baseline on seeds 0, 1.
    assert areas[('a', 'dcnv2')]['area']['mean'] == pytest.approx((0.5 + 0.7 + 0.9) / 6)
    pair = areas[('a', 'dcnv2')]['vs_baseline']
    # areas 0.25, 0.35 against 0.20, 0.25: differences 0.05 and 0.10
    assert pair['seeds'] == [0, 1] and pair['mean'] == pytest.approx(0.075)
    assert 'vs_baseline' not in areas[('b', 'dcnv2')]   # no arm (b) baseline yet
    final = {(e['arm'], e['variant']): e for e in summary['untransformed']}
    # final mAP 0.5, 0.7 against 0.4, 0.5: differences 0.1, 0.2; t(0.975, 1) = 12.7062
    d = final[('a', 'dcnv2')]['vs_baseline']
    assert d['seeds'] == [0, 1] and d['mean'] == pytest.approx(0.15)
    assert d['ci_high'] == pytest.approx(0.15 + 12.7062 * 0.0707107 / 2 ** 0.5, abs=1e-4)
    assert 'vs_baseline' not in final[('a', 'baseline')]
    gaps = {(g['variant'], g['stage']): g for g in summary['on_object_gap']}
    assert set(gaps) == {('dcnv2', s) for s in study.STAGES}   # no baseline, no arm (b)
    g = gaps[('dcnv2', 'c4')]
    assert g['upright']['mean'] == pytest.approx(0.1) and g['upright']['n'] == 3
    # rotated gaps per seed 0.01, 0.02, 0.03: mean 0.02, s = 0.01, t(0.975, 2) = 4.302653
    assert g['rotated']['mean'] == pytest.approx(0.02)
    assert g['rotated']['ci_low'] == pytest.approx(0.02 - 4.302653 * 0.01 / 3 ** 0.5)
    assert areas[('b', 'dcnv2')]['area']['ci_low'] is None
    aug = {(e['variant'], e['measure']): e for e in summary['augmentation']}
    assert set(aug) == {('dcnv2', m) for m in ('untransformed', 'rotate')}
    assert aug[('dcnv2', 'untransformed')]['b_minus_a']['mean'] == pytest.approx(0.3 - 0.7)
    assert 'gap_change' not in aug[('dcnv2', 'untransformed')]   # no arm (b) baseline
    # Timings compare only on one machine: one cost row per machine and variant.
    cost = {(e['machine'], e['variant']): (e['runs'], e['sec_per_iter']) for e in summary['cost']}
    assert cost == {('test machine', 'baseline'): (2, 0.5), ('test machine', 'dcnv2'): (3, 0.5),
                    ('fast; 2 cores', 'dcnv2'): (1, 0.2)}
    keys = ('params', 'flops', 'offset_params', 'offset_flops', 'sampling_flops')
    (tmp_path / 'complexity.json').write_text(json.dumps(
        {f'{v}@128': {k: 1000 for k in keys} for v in ('baseline', 'dcnv2')}))
    report = open(build_report(setup, results, date='2026-01-01')).read()
    assert 'Runs finished: 6 of 12' in report and 'Partial grid: 6 runs' in report
    assert '| (a) | rotate | DCNv2, ConvOffsetHead | 3 | 0.350 ± 0.100 |' in report
    assert '| +0.075 |' in report
    assert '| (a) | DCNv2, ConvOffsetHead | 3 | 0.700 ± 0.200 | [0.203, 1.197] | +0.150 |' in report
    assert '| DCNv2, ConvOffsetHead | c5 | 3 | +0.100 ± 0.000 |' in report
    # c5 = layer4: mean |offset| 0.4 + 0.01 * seed over seeds 0, 1, 2; max over its layers 1
    assert '| (a) | DCNv2, ConvOffsetHead | c5 | 3 | 0.410 ± 0.010 | 1.00 ± 0.00 | 0.050 | 0.500 |' \
        in report
    assert not any(e['variant'] == 'baseline' for e in summary['offsets'])
    assert '| DCNv2, ConvOffsetHead | c3 | 3 | 0.600 / 0.500 |' in report
    assert '| DCNv2, ConvOffsetHead | untransformed | -0.400 (1 vs 3) | — |' in report
    assert ('Where the runs trained: fast; 2 cores: 1 runs (arm (b)), 2026-01-01; test '
            'machine: 5 runs (arm (a)), 2026-01-01 to 2026-01-03.') in report
    assert '| fast | DCNv2, ConvOffsetHead | 0.001 M |' in report
    docs = tmp_path / 'docs'
    assert (docs / 'robustness_rotate.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (docs / 'on_object_rotate.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    rot = {r['value']: r['gap'] for r in summary['on_object']
           if (r['variant'], r['stage']) == ('dcnv2', 'c3')}
    assert rot[0]['mean'] == pytest.approx(0.1) and rot[90]['mean'] == pytest.approx(0.02)
    assert (docs / 'results.csv').read_text().splitlines()[0].startswith('arm,variant,transform')
    assert json.loads((docs / 'summary.json').read_text())['runs_finished'] == 6
    results[-1]['recipe'] = dict(results[-1]['recipe'], length=99)
    with pytest.raises(ValueError, match=r'these runs differ: \[\'b/dcnv2/seed0\'\]'):
        build_report(setup, results)
