"""Run a detector on image files with MMDetection's own ``DetInferencer``.

What ``tools/infer.py`` calls.  ``DetInferencer`` reads the config's test pipeline,
swaps its ``LoadImageFromFile`` step for a loader of its own, and writes one
visualisation and one prediction file per image under ``out_dir``
(``vis/NAME.jpg``, ``preds/NAME.json``).  This module adds only:

- the list of images from a file or a folder, with an error when there is none;
- class names from the config (its test dataset's ``metainfo``) when no checkpoint
  is given: ``DetInferencer`` would name the classes after COCO's 80;
- one ``predictions.json`` for the whole run: per image, the detections scoring at
  least ``score_thr``, with class names.
"""
import json
import os
import os.path as osp
from typing import List, Optional

from .model import existing_file, load_config

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def collect_images(path: str) -> List[str]:
    """``[path]`` for an image file; the images in folder ``path`` (sorted, not recursive).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a folder without images, or a file without an image extension.
    """
    path = os.fspath(path)
    if osp.isdir(path):
        found = sorted(osp.join(path, name) for name in os.listdir(path)
                       if name.lower().endswith(IMAGE_EXTENSIONS)
                       and osp.isfile(osp.join(path, name)))
        if not found:
            raise ValueError(f'image folder {path!r} holds no file ending in one of '
                             f'{IMAGE_EXTENSIONS}')
        return found
    if not osp.isfile(path):
        raise FileNotFoundError(f'image: expected an image file or a folder of images, got '
                                f'{path!r} (it does not exist)')
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        raise ValueError(f'image: expected a file ending in one of {IMAGE_EXTENSIONS}, got '
                         f'{path!r}')
    return [path]


def _config_classes(cfg) -> Optional[tuple]:
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    classes = (dataset.get('metainfo') or {}).get('classes')
    return tuple(classes) if classes else None


def _inferencer_class():
    """``DetInferencer`` whose model, built without weights, takes the config's classes.

    ``_init_model(cfg, weights, device)`` is how MMEngine's ``BaseInferencer`` builds
    the model, the step its subclasses (``DetInferencer`` among them) override; the
    visualizer is built after it and reads the model's ``dataset_meta`` itself.
    ``tests/test_inferencer.py`` checks the signature against the installed mmdet.
    """
    from mmdet.apis import DetInferencer

    class ConfigClassesInferencer(DetInferencer):
        def _init_model(self, cfg, weights=None, device='cpu'):
            model = super()._init_model(cfg, weights, device)
            classes = _config_classes(cfg)
            if weights is None and classes is not None:
                model.dataset_meta = dict(model.dataset_meta, classes=classes)
            return model

    return ConfigClassesInferencer


def build_inferencer(config, checkpoint: Optional[str] = None, device: Optional[str] = None):
    """``mmdet.apis.DetInferencer`` for ``config`` (a path or a ``Config``, not changed).

    Without ``checkpoint`` the weights are random (mmdet warns) and the class names
    come from the config's test dataset, where it names them.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
    """
    import mmdcn_plugin  # noqa: F401  (registers the layers; safe checkpoint loading)
    if checkpoint is not None:
        checkpoint = existing_file('checkpoint', checkpoint)
    return _inferencer_class()(model=load_config(config), weights=checkpoint, device=device,
                               show_progress=False)


def _detections(pred: dict, classes, score_thr: float) -> List[dict]:
    """The detections of one ``DetInferencer`` prediction dict scoring >= score_thr."""
    found = []
    for label, score, bbox in zip(pred['labels'], pred['scores'], pred['bboxes']):
        if score >= score_thr:
            name = classes[label] if classes and label < len(classes) else str(label)
            found.append(dict(label=int(label), class_name=name, score=float(score),
                              bbox=[float(v) for v in bbox]))
    return found


def run_inference(config, inputs: str, checkpoint: Optional[str] = None,
                  out_dir: str = 'outputs', score_thr: float = 0.3,
                  device: Optional[str] = None) -> dict:
    """Detect objects in an image or a folder of images; write the results to ``out_dir``.

    Writes ``out_dir/vis/NAME.jpg`` (boxes scoring >= ``score_thr`` drawn) and
    ``out_dir/preds/NAME.json`` (every prediction) through ``DetInferencer``, and
    ``out_dir/predictions.json``: ``{"config", "checkpoint", "score_thr", "images":
    [{"image", "detections": [{"label", "class_name", "score", "bbox" (x1, y1, x2,
    y2 in input pixels)}]}]}``.  Returns that dict.
    """
    if not 0.0 <= score_thr <= 1.0:
        raise ValueError(f'score_thr: expected a number in [0, 1], got {score_thr!r}')
    if checkpoint is not None:
        existing_file('checkpoint', checkpoint)
    images = collect_images(inputs)
    inferencer = build_inferencer(config, checkpoint, device)
    results = inferencer(images, out_dir=out_dir, pred_score_thr=score_thr,
                         no_save_vis=False, no_save_pred=False)
    classes = inferencer.model.dataset_meta.get('classes')
    summary = dict(
        config=config if isinstance(config, str) else config.filename,
        checkpoint=checkpoint, score_thr=score_thr,
        images=[dict(image=image, detections=_detections(pred, classes, score_thr))
                for image, pred in zip(images, results['predictions'])])
    with open(osp.join(out_dir, 'predictions.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=1)
    return summary
