"""``pretrain_backbone``: what ``tools/pretrain_backbone.py`` runs, start to end.

1. generate a pretraining set with the embedded generator under ``data_dir``: a seed of
   its own (never the detection sets' seed 0, so no detection train or val image is
   seen), the detector's image size, the chosen deformation level;
2. cut one object-centred crop per instance (train split: training, val split: the
   reported accuracy);
3. train the config's backbone (plain convs) with a linear classifier on top;
4. save the backbone's state dict (``{'state_dict': ..., 'meta': ...}``) and a JSON
   record beside it with the settings, the accuracies, the time and the file's SHA-256.
"""
import contextlib
import hashlib
import json
import os
import os.path as osp
import time
from typing import Callable, Dict, Iterator, Optional

import torch

from .classify import ShapeClassifier, build_backbone, evaluate, to_input, train_classifier
from .crops import object_crops

__all__ = ['pretrain_backbone', 'pretrained_digest', 'PRETRAIN_DEFAULTS', 'sha256_of',
           'seeded_threads']

#: The settings of the committed weights (``weights/README.md``).
PRETRAIN_DEFAULTS = dict(num_train=24000, num_val=150, data_seed=1, deformation='moderate',
                         epochs=8, batch_size=64, lr=2e-3, weight_decay=0.05, seed=0,
                         threads=1)


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def pretrained_digest(cfg) -> str:
    """12 hex digits of the SHA-256 of ``cfg``'s backbone ``init_cfg`` checkpoint; ``''``
    when the backbone has none.

    Raises:
        ValueError: the checkpoint is named but missing.
    """
    init = (cfg.get('model', {}).get('backbone', {}) or {}).get('init_cfg') or {}
    path = init.get('checkpoint') if isinstance(init, dict) else None
    if not path:
        return ''
    if not osp.isfile(path):
        raise ValueError(f'model.backbone.init_cfg.checkpoint: expected a file, got {path!r}')
    return sha256_of(path)[:12]


@contextlib.contextmanager
def seeded_threads(seed: int, threads: int) -> Iterator[None]:
    """Inside the block torch's CPU generator starts from ``seed`` and CPU ops use
    ``threads`` threads; the caller's generator state and thread count come back on
    exit, also when the block raises.

    The CPU generator alone is seeded (what ``torch.manual_seed`` leaves in it), so no
    CUDA generator is touched, nor seeded lazily for later.
    """
    previous = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _image_size(cfg) -> int:
    for step in cfg.train_pipeline:
        if step['type'].split('.')[-1] == 'Resize':
            return int(max(step['scale']))
    raise ValueError('config: expected a Resize step in train_pipeline to take the image '
                     'size from, found none')


def _check_existing_set(data_dir: str, num_train: int, num_val: int) -> None:
    """Refuse a pretraining set already in ``data_dir`` with other image counts: reusing
    it would silently give other weights than the settings (and the record) say."""
    found = {}
    for split in ('train', 'val'):
        path = osp.join(data_dir, 'annotations', f'{split}.json')
        if osp.isfile(path):
            with open(path) as f:
                found[split] = len(json.load(f)['images'])
    want = dict(train=num_train, val=num_val)
    if found and found != want:
        raise ValueError(f'data_dir {data_dir!r} holds a pretraining set of {found} images; '
                         f'the settings ask for {want}: remove it or pass another data_dir')


def pretrain_backbone(config, out: str, data_dir: str, *,
                      log: Callable[[str], None] = print, **settings) -> Dict:
    """Pretrain the backbone of ``config`` and write it to ``out`` (see the module doc).

    Args:
        config (str | Config): A detector config whose ``model.backbone`` is built.
        out (str): Path of the ``.pth`` file to write (its folder is created).
        data_dir (str): Where the pretraining set is generated (reused when present).
        **settings: Any key of :data:`PRETRAIN_DEFAULTS`.

    Returns:
        dict: the record also written to ``out`` with ``.json`` for ``.pth``.
    """
    from ..apis import load_config
    unknown = sorted(set(settings) - set(PRETRAIN_DEFAULTS))
    if unknown:
        raise TypeError(f'pretrain_backbone: unknown setting(s) {unknown}; expected any of '
                        f'{sorted(PRETRAIN_DEFAULTS)}')
    s = dict(PRETRAIN_DEFAULTS, **settings)
    cfg = load_config(config)
    with seeded_threads(s['seed'], s['threads']):
        return _pretrain(cfg, out, data_dir, s, log)


def _pretrain(cfg, out: str, data_dir: str, s: dict, log: Callable[[str], None]) -> Dict:
    from mmdcn_plugin.synthetic import CLASSES, generate_synthetic_coco
    size = _image_size(cfg)
    _check_existing_set(data_dir, s['num_train'], s['num_val'])
    if not osp.isfile(osp.join(data_dir, 'annotations', 'val.json')):
        log(f'generating the pretraining set into {data_dir} (seed {s["data_seed"]}, '
            f'{s["num_train"]} + {s["num_val"]} images of {size} px)')
        generate_synthetic_coco(data_dir, num_train=s['num_train'], num_val=s['num_val'],
                                seed=s['data_seed'], deformation=s['deformation'],
                                image_size=size, progress=False)
    window = size // 2
    prep = cfg.model.data_preprocessor
    data = {}
    for split in ('train', 'val'):
        crops, labels = object_crops(osp.join(data_dir, 'annotations', f'{split}.json'),
                                     osp.join(data_dir, 'images', split), window)
        data[split] = (to_input(crops, prep.mean, prep.std, prep.get('bgr_to_rgb', False)),
                       torch.from_numpy(labels))
    log(f'{len(data["train"][1])} training crops, {len(data["val"][1])} held-out crops of '
        f'{window} px')

    backbone = build_backbone(cfg)
    with torch.no_grad():
        channels = backbone(data['train'][0][:1])[-1].shape[1]
    model = ShapeClassifier(backbone, channels, len(CLASSES))

    def progress(rec):
        log(f'epoch {rec["epoch"]}/{s["epochs"]} iter {rec["iter"]}/{rec["total"]} '
            f'loss {rec["loss"]:.4f} lr {rec["lr"]:.2e} ({rec["seconds"]:.0f} s)')

    stats = train_classifier(model, *data['train'], epochs=s['epochs'],
                             batch_size=s['batch_size'], lr=s['lr'],
                             weight_decay=s['weight_decay'], seed=s['seed'], log=progress)
    record = dict(settings=s, image_size=size, window=window,
                  train_crops=len(data['train'][1]), val_crops=len(data['val'][1]),
                  train_accuracy=evaluate(model, *data['train']),
                  val_accuracy=evaluate(model, *data['val']),
                  seconds=round(stats['seconds'], 1), iters=stats['iters'],
                  torch=torch.__version__, created=time.strftime('%Y-%m-%d'))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(dict(state_dict=model.backbone.state_dict(),
                    meta=dict(settings=s, image_size=size)), out)
    record['sha256'] = sha256_of(out)
    with open(osp.splitext(out)[0] + '.json', 'w') as f:
        json.dump(record, f, indent=1)
    log(f'train accuracy {record["train_accuracy"]:.3f}, held-out accuracy '
        f'{record["val_accuracy"]:.3f}; wrote {out} (sha256 {record["sha256"][:12]}...)')
    return record
