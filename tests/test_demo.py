"""`make demo` on a tiny schedule: both detectors train and are evaluated through the
tools, the table and the pictures are produced, and a second call resumes."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# How the demo shows the commands it runs (mmdet's tools through the package).
TRAIN, TEST = (f'-m mmdcn_plugin.engine.mmdet_tools {tool}' for tool in ('train', 'test'))


def _demo(tmp_path):
    opts = ['num_train_images=8', 'num_val_images=3', 'train_cfg.max_epochs=1',
            'train_dataloader.batch_size=4']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'demo.py'), '--data-root',
         str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'work'), '--num-images', '2',
         '--cfg-options', *opts],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def test_demo_compares_plain_and_dcn_end_to_end(tmp_path):
    out = _demo(tmp_path)
    work = tmp_path / 'work'
    # Data generated with the sizes asked for.
    train = json.loads((tmp_path / 'data' / 'annotations' / 'train.json').read_text())
    assert len(train['images']) == 8
    # Both detectors trained at once, sharing the cores, and were evaluated by mmdet's
    # test tool (run through the package, not the checkout's tools/).
    assert 'training plain conv and DCNv2 at once' in out
    for name in ('plain conv', 'DCNv2'):
        # Each detector's test runs in its own chain, right after its training.
        assert f'[{name}] $ {TRAIN}' in out and f'[{name}] $ {TEST}' in out
    for short in ('plain', 'dcnv2'):
        metrics = json.loads((work / short / 'test_metrics.json').read_text())['metrics']
        assert 0.0 <= metrics['bbox_mAP'] <= 1.0
    # One table: both rows and the difference, with parameters, GFLOPs and s/iter.
    lines = [line for line in out.splitlines() if line.startswith('| ')]
    assert [line.split('|')[1].strip() for line in lines[1:]] == [
        'plain conv', 'DCNv2', 'difference']
    result = json.loads((work / 'results.json').read_text())
    plain, dcn = result['rows']
    assert dcn['params_M'] > plain['params_M']    # the offset heads
    assert dcn['gflops'] > plain['gflops']        # DCN counted
    assert plain['s_per_iter'] > 0 and dcn['s_per_iter'] > 0
    # The convergence verdict of each detector, as results.json has it: one epoch is one
    # validation, fewer than a converged run needs ("converged" alone would also match
    # "NOT converged").
    from mmdcn_plugin.comparison.records import MIN_EVALUATIONS
    assert list(result['convergence']) == ['plain conv', 'DCNv2']
    for name, conv in result['convergence'].items():
        assert conv['evaluations'] == 1 < MIN_EVALUATIONS and conv['converged'] is False
        verdict = [line for line in out.splitlines() if line.startswith(f'- {name}: ')]
        assert len(verdict) == 1 and ': NOT converged (' in verdict[0], verdict
    # The pictures.
    for name in ('convergence.png', 'detections_side_by_side.png'):
        assert (work / name).stat().st_size > 0
    assert any(p.endswith('.png') for p in os.listdir(work / 'offsets'))
    # A second call resumes: nothing is trained or evaluated again.
    again = _demo(tmp_path)
    assert again.count('already trained and evaluated') == 2
    assert TRAIN not in again and TEST not in again


def test_a_work_dir_of_another_recipe_is_refused(tmp_path):
    from mmdcn_plugin.comparison.demo import check_recipe
    work = tmp_path / 'plain'
    recipe = dict(config='a.py', pretrained='afb2f76a6cae', cfg_options=[])
    check_recipe(str(work), recipe)                       # stamps a new work dir
    assert json.loads((work / 'recipe.json').read_text()) == recipe
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    check_recipe(str(work), recipe)                       # same recipe: resumes
    other = dict(recipe, pretrained='6e731609d12b')
    with pytest.raises(SystemExit, match=r"holds a training of another recipe: expected "
                       r"\{.*'6e731609d12b'.*found \{.*'afb2f76a6cae'"):
        check_recipe(str(work), other)
    (work / 'recipe.json').unlink()                       # a demo of before the stamp
    with pytest.raises(SystemExit, match='found no recipe.json'):
        check_recipe(str(work), recipe)


def test_demo_figures_leave_matplotlib_global_state_alone(tmp_path):
    """The pictures are drawn without pyplot: the caller's backend and figures stay."""
    code = ('import sys, matplotlib\n'
            'from mmdcn_plugin.comparison.figures import plot_curves\n'
            "plot_curves({'m': {'bbox mAP': [(1, 0.1), (2, 0.3)]}}, sys.argv[1])\n"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n")
    png = tmp_path / 'curves.png'
    proc = subprocess.run([sys.executable, '-c', code, str(png)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, MPLBACKEND='svg'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['svg', 'False']
    assert png.read_bytes().startswith(b'\x89PNG')
