"""MMDetection's ``DetInferencer`` on every config here, with and without a checkpoint,
and ``tools/infer.py`` end to end on the quick-start model.

The image is a generated synthetic scene (textured background, deformed shapes,
clutter), written to disk as a user's photo would be.  The COCO configs are full-size
R50 detectors: their test ``Resize`` is set to 128 px so a CPU run stays short; the
pipeline is otherwise the config's own.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from helpers import ROOT, one_thread  # noqa: F401  (autouse fixture)
from mmdcn_plugin.synthetic import CLASSES, generate_synthetic_coco

CONFIGS = sorted(
    osp.relpath(p, ROOT) for p in
    glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    + glob.glob(osp.join(ROOT, 'docs', 'examples', '**', '*.py'), recursive=True))
QUICK_DCNV2 = 'configs/quickstart/faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py'
# Every quick-start config and one COCO config run in the default suite; the other
# full-size COCO detectors (about 20 s each on a busy 2-core machine) with --runslow.
DEFAULT_SUITE = {c for c in CONFIGS if c.startswith('configs/quickstart/')} | {
    'configs/mask_rcnn/mask-rcnn_r50-dcnv2-c3-c5_fpn_1x_coco.py'}


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('photos')
    generate_synthetic_coco(str(root), num_train=1, num_val=2, seed=3, progress=False)
    return str(root / 'images' / 'val')


def small_test_resize(cfg: Config) -> Config:
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (128, 128)
    return cfg


def save_checkpoint(model, path, classes):
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=tuple(classes)))), path)


def params(configs):
    return [pytest.param(c, marks=() if c in DEFAULT_SUITE else (pytest.mark.slow,))
            for c in configs]


@pytest.mark.filterwarnings('ignore::UserWarning')  # random weights, COCO class names
@pytest.mark.parametrize('path', params(CONFIGS))
def test_det_inferencer_with_and_without_checkpoint(path, images, tmp_path):
    from mmdet.apis import DetInferencer
    cfg = small_test_resize(Config.fromfile(osp.join(ROOT, path)))
    image = sorted(glob.glob(osp.join(images, '*.png')))[0]

    random = DetInferencer(model=cfg, weights=None, device='cpu', show_progress=False)
    first = random(image, return_datasamples=True)['predictions'][0]
    assert first.pred_instances.bboxes.shape[1] == 4
    assert first.ori_shape == (128, 128)
    with_masks = cfg.model.get('roi_head', {}).get('mask_head') is not None
    assert ('masks' in first.pred_instances) == with_masks

    ckpt = str(tmp_path / 'model.pth')
    save_checkpoint(random.model, ckpt, ['thing'] * 80)
    loaded = DetInferencer(model=cfg, weights=ckpt, device='cpu', show_progress=False)
    again = loaded(image, return_datasamples=True)['predictions'][0]
    # The checkpoint's weights, not a fresh random init, made these predictions.
    theirs, ours = random.model.state_dict(), loaded.model.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs), \
        [k for k in theirs if not torch.equal(theirs[k], ours[k])][:5]
    # (Random detectors score many boxes alike, so compare the sorted scores.)
    assert torch.allclose(first.pred_instances.scores.sort().values,
                          again.pred_instances.scores.sort().values, atol=1e-5)
    assert loaded.model.dataset_meta['classes'] == tuple(['thing'] * 80)


def test_det_inferencer_takes_the_quick_start_pipeline_unchanged():
    """The issue's failure: mmdet looks for 'LoadImageFromFile' by its exact name."""
    cfg = Config.fromfile(osp.join(ROOT, QUICK_DCNV2))
    types = [step.type for step in cfg.test_dataloader.dataset.pipeline]
    assert types[0] == 'LoadImageFromFile', types
    assert cfg.test_dataloader.dataset.type == 'SafeCocoDataset'


def run_infer(*args):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'infer.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    return proc, proc.stdout + proc.stderr


def test_infer_tool_end_to_end(images, tmp_path):
    from mmdcn_plugin.apis import build_model_from_config
    model = build_model_from_config(osp.join(ROOT, QUICK_DCNV2))
    ckpt = str(tmp_path / 'epoch_1.pth')
    save_checkpoint(model, ckpt, CLASSES)
    out = tmp_path / 'out'
    proc, log = run_infer(QUICK_DCNV2, images, '--checkpoint', ckpt, '--out-dir', str(out),
                          '--score-thr', '0.0')
    assert proc.returncode == 0, log[-3000:]
    names = sorted(os.listdir(images))
    assert sorted(os.listdir(out / 'vis')) == names
    assert sorted(os.listdir(out / 'preds')) == [n.rsplit('.', 1)[0] + '.json' for n in names]
    summary = json.loads((out / 'predictions.json').read_text())
    assert [osp.basename(i['image']) for i in summary['images']] == names
    assert summary['checkpoint'] == ckpt and summary['score_thr'] == 0.0
    detections = [d for i in summary['images'] for d in i['detections']]
    assert detections, 'score-thr 0 lists every detection'
    assert {d['class_name'] for d in detections} <= set(CLASSES)
    assert f'{len(names)} image(s), {len(detections)} detection(s)' in log


def test_infer_tool_without_checkpoint_names_the_config_classes(images, tmp_path):
    out = tmp_path / 'out'
    image = sorted(glob.glob(osp.join(images, '*.png')))[0]
    proc, log = run_infer(QUICK_DCNV2, image, '--out-dir', str(out), '--score-thr', '0')
    assert proc.returncode == 0, log[-3000:]
    summary = json.loads((out / 'predictions.json').read_text())
    names = {d['class_name'] for i in summary['images'] for d in i['detections']}
    assert names and names <= set(CLASSES), names


def test_inferencer_without_checkpoint_takes_the_config_classes():
    """Through DetInferencer's model-building step, not by writing into its internals."""
    import inspect
    from mmdet.apis import DetInferencer
    from mmdcn_plugin.apis.inference import build_inferencer
    # The step overridden (MMEngine's BaseInferencer calls _init_model(cfg, weights, device)).
    assert list(inspect.signature(DetInferencer._init_model).parameters) == [
        'self', 'cfg', 'weights', 'device']
    cfg = Config.fromfile(osp.join(ROOT, QUICK_DCNV2))
    with pytest.warns(UserWarning, match='weights is None'):
        inferencer = build_inferencer(cfg, device='cpu')
    assert isinstance(inferencer, DetInferencer)
    assert inferencer.model.dataset_meta['classes'] == tuple(CLASSES)
    assert inferencer.visualizer.dataset_meta['classes'] == tuple(CLASSES)
    assert 'init_cfg' in cfg.model.backbone and cfg.model.backbone.init_cfg is not None


@pytest.mark.parametrize('inputs, kwargs, error, message', [
    ('no/such/dir', {}, FileNotFoundError, "got 'no/such/dir' (it does not exist)"),
    ('README.md', {}, ValueError, 'expected a file ending in one of'),
    ('docs', {}, ValueError, "image folder 'docs' holds no file ending in one of"),
    ('docs', dict(score_thr=2), ValueError, 'score_thr: expected a number in [0, 1], got 2'),
    ('docs', dict(checkpoint='no.pth'), FileNotFoundError,
     "checkpoint: expected an existing file, got 'no.pth'"),
])
def test_inference_argument_errors(inputs, kwargs, error, message):
    from mmdcn_plugin.apis.inference import run_inference
    with pytest.raises(error) as err:
        run_inference(osp.join(ROOT, QUICK_DCNV2), osp.join(ROOT, inputs), **kwargs)
    assert message in str(err.value).replace(ROOT + '/', '')


def test_infer_tool_reports_a_bad_argument_as_a_usage_error(tmp_path):
    proc, log = run_infer(QUICK_DCNV2, 'no/such/dir')
    assert proc.returncode == 2 and "got 'no/such/dir' (it does not exist)" in log, log[-2000:]
