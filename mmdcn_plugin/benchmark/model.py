"""Time a detector's training and inference steps against its baseline."""
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..apis import build_model_from_config
from ..layers import DeformableConv2d


def _no_log(msg: str) -> None:
    pass


def _batch(cfg, batch_size: int):
    from mmengine.runner import Runner
    loader_cfg = dict(cfg.train_dataloader)
    loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    return next(iter(loader))


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


def run_model(config: str, baseline: Optional[str] = None, batch_size: int = 2,
              iters: int = 5, warmup: int = 1, cfg_options: Optional[dict] = None,
              log: Callable[[str], None] = _no_log) -> List[dict]:
    """Time ``train_step`` and ``test_step`` of ``config`` and of its baseline.

    The baseline is ``baseline`` when given, else ``config`` with the backbone's
    deformable layers removed.  Both models get the Runner's initial weights (seed 0)
    and one batch of ``config``'s training data; the two are interleaved in every
    iteration.

    Returns:
        the rows of :func:`summarize_model_times` (``baseline`` first, then
        ``config``), each also with ``params`` and ``deformable_layers`` (the
        number of :class:`DeformableConv2d` in the model).

    Raises:
        ValueError: no ``baseline`` and ``config`` has no ``model.backbone.dcn``.
    """
    from mmengine.optim import build_optim_wrapper

    def build(path, strip=False):
        return build_model_from_config(path, cfg_options=cfg_options, strip_dcn=strip,
                                       init_weights=True, seed=0)

    model = build(config)
    base_model = build(baseline) if baseline else build(config, strip=True)
    variants = {'baseline': base_model, 'config': model}
    batch = _batch(model.cfg, batch_size)
    optims = {k: build_optim_wrapper(m, m.cfg.optim_wrapper) for k, m in variants.items()}
    train = {k: [] for k in variants}
    infer = {k: [] for k in variants}
    for it in range(warmup + iters):
        log(f'[model] iteration {it + 1}/{warmup + iters}'
            + (' (warm-up)' if it < warmup else ''))
        for name, m in variants.items():
            m.train()
            start = time.perf_counter()
            m.train_step(batch, optims[name])
            t_train = time.perf_counter() - start
            m.eval()
            start = time.perf_counter()
            with torch.no_grad():
                m.test_step(batch)
            t_test = time.perf_counter() - start
            if it >= warmup:
                train[name].append(t_train)
                infer[name].append(t_test)
    rows = summarize_model_times(train, infer, batch_size)
    for row in rows:
        m = variants[row['variant']]
        row['params'] = sum(p.numel() for p in m.parameters())
        row['deformable_layers'] = sum(isinstance(x, DeformableConv2d) for x in m.modules())
    return rows


def model_table(rows: List[dict]) -> str:
    """A Markdown table of :func:`run_model`'s rows."""
    lines = ['| variant | train iteration (s) | x baseline | inference images/s |',
             '|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['variant']} | {r['train_iter_s']} | {r['train_vs_baseline']}x | "
                     f"{r['infer_images_per_s']} |")
    return '\n'.join(lines)
