"""What the study's test files share: a config on the quick-start recipe, a fake run's
JSON, and the study's command line in a child process."""
import os.path as osp
import subprocess
import sys

from mmdcn_plugin import study
from mmdcn_plugin.study import BASE_CONFIG

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_study(*args):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'study.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def recipe_config(tmp_path, body):
    """A config of the quick-start recipe with ``body`` appended; its path."""
    path = tmp_path / 'recipe.py'
    path.write_text(f'_base_ = {BASE_CONFIG!r}\n{body}\n')
    return str(path)


def fake_run(arm, variant, seed, level, recipe, machine='test machine', sec_per_iter=0.5):
    """A run whose rotate curve is ``level`` at 0 degrees falling linearly to 0 at 180; its
    offsets put 0.6 of the points on the object upright, 0.51 + 0.01 * seed rotated (the
    grid: 0.5)."""
    rows = [dict(value=v, bbox_mAP=level * (1 - v / 180), mAP50=level, mAP75=level / 2,
                 bbox_mAP_s=0, bbox_mAP_m=0, n_instances=10) for v in (0, 90, 180)]
    on_object = None if variant == 'baseline' or arm == 'b' else [
        dict(value=v, stage=s, instances=3, points=27, regular=0.5,
             deformable=0.6 if v == 0 else 0.51 + 0.01 * seed)
        for v in (0, 90, 180) for s in study.STAGES]
    offsets = None if variant == 'baseline' else dict(step=700, layers={
        f'backbone.layer{i}.{j}.conv2': dict(mean_px=0.1 * i + 0.01 * seed, max_px=float(j),
                                             outside_frac=0.05, mask_mean=0.5)
        for i in (2, 3, 4) for j in (0, 1)})
    return dict(arm=arm, variant=variant, seed=seed, recipe=recipe.as_dict(),
                final=dict(bbox_mAP=level), sweeps=dict(rotate=rows), on_object=on_object,
                offsets=offsets,
                machine=machine, date='2026-01-0%d' % (seed + 1), jobs=1, threads=1,
                sec_per_iter=sec_per_iter, train_wall_s=10.0, wall_s=12.0, peak_rss_mb=500.0)


