"""What each variant costs: parameters and FLOPs, the offset branch's share (cached)."""
import json
import os
import os.path as osp

from .constants import variant_config


def variant_complexity(variant: str, image_size: int) -> dict:
    """Parameters and FLOPs (multiply-adds at ``image_size`` px) of a variant's detector.

    Returns:
        dict: ``params``, ``flops``, ``offset_params`` and ``offset_flops`` (the
        offset heads of all deformable layers), ``sampling_flops`` (bilinear sampling
        and modulation) and ``deformable_layers``.
    """
    from ..analysis import deformable_layer_flops, detector_complexity_info
    from ..apis import build_model_from_config
    from ..layers import DeformableConv2d
    model = build_model_from_config(variant_config(variant), seed=0)
    info = detector_complexity_info(model, (image_size, image_size), show_table=False)
    rows = deformable_layer_flops(info['analyzer'])
    offset_params = sum(p.numel() for m in model.modules() if isinstance(m, DeformableConv2d)
                        for p in m.offset_head.parameters())
    return dict(
        params=info['params'], flops=info['flops'], offset_params=offset_params,
        offset_flops=sum(r['offset_head'] for r in rows),
        sampling_flops=sum(r['deform_sampling'] + r['deform_modulation'] for r in rows),
        deformable_layers=len(rows))


def complexity(variant: str, image_size: int, cache_file: str) -> dict:
    """:func:`variant_complexity`, read from ``cache_file`` if there, else computed into it."""
    cache = {}
    if osp.isfile(cache_file):
        with open(cache_file) as f:
            cache = json.load(f)
    key = f'{variant}@{image_size}'
    if key in cache:
        return cache[key]
    cache[key] = variant_complexity(variant, image_size)
    os.makedirs(osp.dirname(cache_file), exist_ok=True)
    with open(cache_file, 'w') as f:
        json.dump(cache, f, indent=1)
    return cache[key]
