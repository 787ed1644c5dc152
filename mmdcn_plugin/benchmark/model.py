"""Time a detector's training and inference steps against its baseline (CPU or CUDA)."""
import contextlib
import copy
import os.path as osp
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..apis import build_model_from_config
from ..layers import DeformableConv2d
from ..utils.timing import Measure, interleaved_times, measure_for

MMDET_PREFIX = 'mmdet::'


def _no_log(msg: str) -> None:
    pass


def resolve_config(path: str, argument: str = 'config') -> str:
    """A config path, with ``mmdet::<rel>`` resolved to the copy installed with mmdet
    (``mmdet/.mim/configs/<rel>``), as ``_base_`` does.

    Raises:
        FileNotFoundError: the file (or mmdet's config) does not exist.
    """
    if not isinstance(path, str):
        raise TypeError(f'{argument}: expected a config path, got {type(path).__name__}')
    if path.startswith(MMDET_PREFIX):
        import mmdet
        rel = path[len(MMDET_PREFIX):]
        resolved = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', rel)
        if not osp.isfile(resolved):
            raise FileNotFoundError(f'{argument}: expected a config installed with mmdet, got '
                                    f'{path!r} ({resolved} does not exist)')
        return resolved
    if not osp.isfile(path):
        raise FileNotFoundError(f'{argument}: expected an existing config file, got {path!r}')
    return path


def _dataloader_batch(cfg, batch_size: int):
    from mmengine.runner import Runner
    loader_cfg = dict(cfg.train_dataloader)
    loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    return next(iter(loader))


def synthetic_batch(batch_size: int, shape: Tuple[int, int], boxes: int = 8,
                    seed: int = 0) -> dict:
    """A packed detection batch as mmdet's ``PackDetInputs`` makes it, of random images.

    ``batch_size`` uint8 images of ``shape`` (H, W) with ``boxes`` random boxes of
    label 0 each; what a training step of a two-stage detector costs does not depend
    on the pixels, and no dataset is needed (the GPU machine has no COCO).

    Returns:
        dict(inputs=[Tensor[3, H, W] uint8] * batch_size,
        data_samples=[DetDataSample] * batch_size)
    """
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.structures import InstanceData

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size: expected an int >= 1, got {batch_size!r}')
    h, w = shape
    if min(h, w) < 32:
        raise ValueError(f'shape: expected an image of at least 32x32 (H, W), got {tuple(shape)}')
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
        size = torch.rand(boxes, 2, generator=gen) * 0.4 + 0.05        # 5-45 % of the side
        corner = torch.rand(boxes, 2, generator=gen) * (1 - size)
        xy1 = corner * torch.tensor([w, h])
        xy2 = (corner + size) * torch.tensor([w, h])
        sample = DetDataSample(metainfo=dict(img_id=i, img_path=f'synthetic_{i}.jpg',
                                             ori_shape=(h, w), img_shape=(h, w),
                                             scale_factor=(1.0, 1.0), flip=False))
        sample.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(torch.cat([xy1, xy2], 1)),
            labels=torch.zeros(boxes, dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def summarize_model_times(train: Dict[str, Sequence[float]],
                          infer: Dict[str, Sequence[float]], batch_size: int) -> List[dict]:
    """Rows of medians, in ``train``'s order; the first variant is the baseline.

    Args:
        train: variant -> seconds of each timed ``train_step``.
        infer: variant -> seconds of each timed ``test_step`` of ``batch_size`` images.

    Returns:
        list of dicts: ``variant``, ``train_iter_s`` (median), ``infer_images_per_s``
        (``batch_size`` / median) and ``train_vs_baseline`` (median / the first
        variant's median).
    """
    if set(train) != set(infer) or not train:
        raise ValueError(f'train, infer: expected the same non-empty variants, got '
                         f'{sorted(train)} and {sorted(infer)}')
    rows = []
    for name in train:
        tr, te = statistics.median(train[name]), statistics.median(infer[name])
        rows.append(dict(variant=name, train_iter_s=round(tr, 4),
                         infer_images_per_s=round(batch_size / te, 2)))
    base = statistics.median(next(iter(train.values())))
    for row in rows:
        row['train_vs_baseline'] = round(statistics.median(train[row['variant']]) / base, 3)
    return rows


def count_deformable_layers(model: torch.nn.Module) -> int:
    """Deformable convolutions in ``model``: ours and mmcv's (``DCN``/``DCNv2`` of mmdet's
    own configs)."""
    return sum(isinstance(m, DeformableConv2d)
               or (type(m).__module__.startswith('mmcv.ops') and 'DeformConv' in type(m).__name__)
               for m in model.modules())


def _variant_names(config: str, baseline: Optional[str], also: Sequence[str]) -> Dict[str, str]:
    names = {'baseline': baseline or config, 'config': config}
    for path in also:
        name = osp.splitext(osp.basename(path))[0]
        names[path if name in names else name] = path
    return names


def _optim_wrapper(model, amp: bool):
    from mmengine.optim import build_optim_wrapper
    cfg = copy.deepcopy(model.cfg.optim_wrapper)
    if amp:
        # What mmdet's tools/train.py --amp sets.
        cfg['type'] = 'AmpOptimWrapper'
        cfg.setdefault('loss_scale', 'dynamic')
    return build_optim_wrapper(model, cfg)


def run_model(config: str, baseline: Optional[str] = None, batch_size: int = 2,
              iters: int = 5, warmup: int = 1, cfg_options: Optional[dict] = None,
              log: Callable[[str], None] = _no_log, also: Sequence[str] = (),
              device: str = 'cpu', amp: bool = False,
              synthetic: Optional[Tuple[int, int]] = None,
              measure: Optional[Measure] = None) -> List[dict]:
    """Time ``train_step`` and ``test_step`` of ``config``, its baseline and ``also``.

    The baseline is ``baseline`` when given, else ``config`` with the backbone's
    deformable layers removed.  Every model gets the Runner's initial weights (seed 0)
    and the same batch: one of ``config``'s training data, or with ``synthetic=(H, W)``
    random images of that size (:func:`synthetic_batch`).  The steps of all models
    are interleaved in every iteration (:func:`mmdcn_plugin.utils.timing.interleaved_times`;
    CUDA events on CUDA).

    Args:
        config, baseline, also: config paths; ``mmdet::<rel>`` names mmdet's own
            (:func:`resolve_config`).
        device (str): ``'cpu'`` or ``'cuda'``.
        amp (bool): mixed precision as mmdet's ``--amp`` (``AmpOptimWrapper``, and
            ``test_step`` under float16 autocast); CUDA only.
        cfg_options (dict or None): overrides merged into every config (e.g.
            ``{'model.backbone.init_cfg': None}`` where pretrained weights cannot be
            downloaded).

    Returns:
        the rows of :func:`summarize_model_times` (``baseline``, ``config``, then the
        ``also`` configs by file name), each also with ``params``,
        ``deformable_layers`` (:func:`count_deformable_layers`), ``config_path``,
        ``device`` and ``amp``.

    Raises:
        ValueError: no ``baseline`` and ``config`` has no ``model.backbone.dcn``;
            ``amp`` off CUDA.
    """
    if amp and not device.startswith('cuda'):
        raise ValueError(f"amp: expected device 'cuda' (mmengine's AmpOptimWrapper), got "
                         f'device={device!r}')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f"device: expected 'cpu' on this machine (no CUDA device), got "
                         f'{device!r}')
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f'iters: expected an int >= 1, got {iters!r}')
    names = _variant_names(config, baseline, also)
    paths = {name: resolve_config(path, name if name in ('baseline', 'config') else 'also')
             for name, path in names.items()}
    models = {}
    for name, path in paths.items():
        log(f'[model] building {name} ({path})')
        models[name] = build_model_from_config(
            path, cfg_options=cfg_options, strip_dcn=name == 'baseline' and not baseline,
            init_weights=True, seed=0, device=device)
    batch = (synthetic_batch(batch_size, synthetic) if synthetic
             else _dataloader_batch(models['config'].cfg, batch_size))
    optims = {k: _optim_wrapper(m, amp) for k, m in models.items()}

    def train_run(name):
        def run():
            models[name].train()
            models[name].train_step(batch, optims[name])
        return run

    def test_run(name):
        def run():
            models[name].eval()
            autocast = (torch.autocast('cuda', dtype=torch.float16) if amp
                        else contextlib.nullcontext())
            with torch.no_grad(), autocast:
                models[name].test_step(batch)
        return run

    runs = {}
    for name in models:
        runs[(name, 'train')] = train_run(name)
        runs[(name, 'test')] = test_run(name)
    times = interleaved_times(runs, iters, warmup, log, '[model] ',
                              measure=measure or measure_for(device))
    rows = summarize_model_times({n: times[(n, 'train')] for n in models},
                                 {n: times[(n, 'test')] for n in models}, batch_size)
    for row in rows:
        m = models[row['variant']]
        row['params'] = sum(p.numel() for p in m.parameters())
        row['deformable_layers'] = count_deformable_layers(m)
        row['config_path'] = names[row['variant']] + (
            ' without its backbone DCN' if row['variant'] == 'baseline' and not baseline else '')
        row.update(device=device, amp=amp)
    return rows


def model_table(rows: List[dict]) -> str:
    """A Markdown table of :func:`run_model`'s rows."""
    lines = ['| variant | train iteration (s) | x baseline | inference images/s | '
             'deformable layers |', '|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['variant']} | {r['train_iter_s']} | {r['train_vs_baseline']}x | "
                     f"{r['infer_images_per_s']} | {r.get('deformable_layers', '')} |")
    return '\n'.join(lines)
