"""The study's recipe, read from the quick-start base config, and each run's config.

The schedule (epoch- or iteration-based ``train_cfg``), the image counts
(``num_train_images``, ``num_val_images``) and the image size come from
:data:`~.constants.BASE_CONFIG`, so the study trains whatever the quick-start recipe
is.  A run adds only its seed, the study's data root, no dataloader workers (``--jobs``
runs train side by side, one process each), one kept checkpoint and, in arm (b), the
augmentation; ``--quick`` also shortens the schedule to a few iterations on a few images,
and ``--epochs`` stretches it (the LR drops at the same fractions of training).
"""
import copy
import os
import os.path as osp
import pprint
import threading
from dataclasses import asdict, dataclass
from typing import List, Optional

from ..pretrain import pretrained_digest
from .constants import (AUGMENTATION, BASE_CONFIG, DATA_SEED, DEFORMATION, DEFORMATION_LEVELS,
                        OFFSET_RECIPE, OFFSET_RECIPES, QUICK)


@dataclass(frozen=True)
class Recipe:
    """What every run of the study trains with.

    Attributes:
        by_epoch (bool): ``train_cfg`` counts epochs (else iterations).
        length (int): ``max_epochs`` or ``max_iters``.
        val_interval (int): in the same unit.
        num_train, num_val (int): images of the generated dataset.
        image_size (int): their side in pixels.
        batch_size (int): training images per iteration.
        pretrained (str): the first 12 hex digits of the SHA-256 of the backbone's
            pretrained weights (``''`` without any), so runs trained from other weights
            are told apart.
        quick (bool): the ``--quick`` schedule.
    """
    by_epoch: bool
    length: int
    val_interval: int
    num_train: int
    num_val: int
    image_size: int
    batch_size: int
    pretrained: str = ''
    quick: bool = False

    @property
    def unit(self) -> str:
        return 'epoch' if self.by_epoch else 'iteration'

    def describe(self) -> str:
        """``'720 iterations (validation every 90), batch 8, 1500 train / 120 val images
        of 128 px'``."""
        unit = self.unit + ('s' if self.length != 1 else '')
        return (f'{self.length} {unit} (validation every {self.val_interval}), batch '
                f'{self.batch_size}, {self.num_train} train / {self.num_val} val images of '
                f'{self.image_size} px')

    def as_dict(self) -> dict:
        return asdict(self)


def _positive_int(cfg, key: str, where: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{where}: {key} must be a positive int, got {value!r}')
    return value


def read_recipe(config: str = BASE_CONFIG, quick: bool = False,
                epochs: Optional[int] = None) -> Recipe:
    """The recipe of ``config`` (``quick``: the tiny schedule of :data:`~.constants.QUICK`;
    ``epochs``: that many epochs instead of the config's, see :func:`scaled_schedule`).

    Raises:
        ValueError: ``train_cfg`` has neither ``max_epochs`` nor ``max_iters``, or an image
            count, the image size or the batch size is missing or not a positive int; or
            ``epochs`` is given with ``quick``, with an iteration-based schedule, or < 1.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    train_cfg = cfg.get('train_cfg') or {}
    if 'max_epochs' in train_cfg:
        by_epoch, length = True, _positive_int(train_cfg, 'max_epochs', config)
    elif 'max_iters' in train_cfg:
        by_epoch, length = False, _positive_int(train_cfg, 'max_iters', config)
    else:
        raise ValueError(f'{config}: train_cfg must hold max_epochs (EpochBasedTrainLoop) '
                         f'or max_iters (IterBasedTrainLoop), got {dict(train_cfg)}')
    # MMEngine's defaults: every epoch, every 1000 iterations.
    val_interval = train_cfg.get('val_interval', 1 if by_epoch else 1000)
    if epochs is not None:
        if quick or not by_epoch or isinstance(epochs, bool) or not isinstance(epochs, int) \
                or epochs < 1:
            raise ValueError(f'epochs: expected a positive int for an epoch-based schedule '
                             f'without --quick, got {epochs!r} (quick={quick}, '
                             f'{"epochs" if by_epoch else "iterations"} in {config})')
        length = epochs
    recipe = Recipe(by_epoch, length, val_interval, _positive_int(cfg, 'num_train_images', config),
                    _positive_int(cfg, 'num_val_images', config),
                    _positive_int(cfg, 'image_size', config),
                    _positive_int(cfg.train_dataloader, 'batch_size', config),
                    pretrained_digest(cfg))
    if not quick:
        return recipe
    # One epoch of num_train / batch_size iterations, or that many iterations.
    iters = QUICK['iterations']
    return Recipe(by_epoch, 1 if by_epoch else iters, 1 if by_epoch else iters,
                  QUICK['num_train'], QUICK['num_val'], recipe.image_size,
                  QUICK['num_train'] // iters, recipe.pretrained, quick=True)


def stretched_from(recipe: Recipe, config: str = BASE_CONFIG) -> Optional[int]:
    """``config``'s own ``max_epochs`` when ``recipe`` trains another number of epochs
    (``--epochs``); None for the config's schedule and for ``--quick``."""
    if recipe.quick or not recipe.by_epoch:
        return None
    base = _load_config(config).train_cfg['max_epochs']
    return None if base == recipe.length else base


def scaled_schedule(cfg, epochs: int) -> dict:
    """``cfg``'s epoch schedule stretched to ``epochs``: ``train_cfg.max_epochs`` and every
    epoch-based LR scheduler's ``begin``, ``end``, ``milestones`` and ``T_max`` scaled by
    ``epochs / max_epochs`` (rounded; milestones kept distinct and inside the run), so
    the LR drops at the same fraction of training.  Iteration-based ones (the warm-up)
    are kept.  Returns the overrides: ``train_cfg`` and ``param_scheduler``.
    """
    length = cfg.train_cfg['max_epochs']
    factor = epochs / length

    def scale(value):
        return min(epochs, max(0, round(value * factor)))

    schedulers = []
    for step in _plain(cfg.get('param_scheduler') or []):
        if step.get('by_epoch', True):
            for key in ('begin', 'end', 'T_max'):
                if isinstance(step.get(key), int):
                    step[key] = scale(step[key])
            if step.get('milestones'):
                step['milestones'] = sorted({max(1, scale(m)) for m in step['milestones']})
        schedulers.append(step)
    return dict(train_cfg=dict(max_epochs=epochs), param_scheduler=schedulers)


def _plain(value):
    """Config dicts and lists as plain Python (so a run config file prints them)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if isinstance(value, tuple) \
            else [_plain(v) for v in value]
    return value


def augmented_pipeline(pipeline: List[dict], augmentation: Optional[dict] = None
                       ) -> List[dict]:
    """``pipeline`` with polygon masks loaded and ``augmentation`` right after loading.

    Raises:
        ValueError: the pipeline has no ``LoadAnnotations``.
    """
    pipeline = [_plain(step) for step in pipeline]
    found = [i for i, step in enumerate(pipeline)
             if str(step.get('type', '')).split('.')[-1] == 'LoadAnnotations']
    if not found:
        raise ValueError('pipeline: expected a LoadAnnotations step to put the augmentation '
                         f'after, got types {[s.get("type") for s in pipeline]}')
    i = found[0]
    pipeline[i].update(with_bbox=True, with_mask=True, poly2mask=False)
    pipeline.insert(i + 1, copy.deepcopy(augmentation or AUGMENTATION))
    return pipeline


#: MMEngine's ``Config.fromfile`` is not thread-safe: two runs of arm (b) starting at once
#: (``--jobs 2`` runs them in threads) raced in its ``pkg_resources`` lookup and one died
#: with "TypeError: Expected str, Requirement, or Distribution".
_CONFIG_LOCK = threading.Lock()


def _load_config(path: str):
    from mmengine.config import Config
    with _CONFIG_LOCK:
        return Config.fromfile(path)


def offset_recipe_overrides(name: str, config: str = BASE_CONFIG) -> dict:
    """What offset recipe ``name`` (:data:`~.constants.OFFSET_RECIPES`) changes in
    ``config``: the heads' ``lr_mult``; for a ramp, ``custom_hooks`` (the config's own,
    then :class:`~mmdcn_plugin.hooks.OffsetLrRampHook`); for a bound, the backbone's
    ``dcn.offset_head`` (a ConvOffsetHead with ``max_offset``).  ``{}`` for ``'slow'``.

    Raises:
        ValueError: an unknown name.
    """
    if name not in OFFSET_RECIPES:
        raise ValueError(f'offset_recipe: expected one of {list(OFFSET_RECIPES)}, got {name!r}')
    spec = OFFSET_RECIPES[name]
    out = {}
    if spec['lr_mult'] is not None:
        out['optim_wrapper'] = dict(paramwise_cfg=dict(
            custom_keys={'offset_head': dict(lr_mult=spec['lr_mult'])}))
    if spec['ramp'] is not None:
        hooks = _plain(_load_config(config).get('custom_hooks') or [])
        out['custom_hooks'] = hooks + [dict(type='OffsetLrRampHook', **spec['ramp'])]
    if spec.get('max_offset') is not None:
        out['model'] = dict(backbone=dict(dcn=dict(offset_head=dict(
            type='ConvOffsetHead', max_offset=spec['max_offset']))))
    return out


def run_overrides(recipe: Recipe, data_root: str, seed: int, arm: str,
                  config: str = BASE_CONFIG, offset_recipe: str = OFFSET_RECIPE) -> dict:
    """What a run's config changes in its variant's config (nested, as a config file);
    ``offset_recipe`` only for a deformable variant (see :func:`offset_recipe_overrides`)."""
    root = data_root.rstrip('/') + '/'
    out = dict(randomness=dict(seed=seed),
               default_hooks=dict(checkpoint=dict(max_keep_ckpts=1)))
    out.update(offset_recipe_overrides(offset_recipe, config))
    for split in ('train', 'val', 'test'):
        out[f'{split}_dataloader'] = dict(num_workers=0, persistent_workers=False,
                                          dataset=dict(data_root=root))
    for split in ('val', 'test'):
        out[f'{split}_evaluator'] = dict(ann_file=root + 'annotations/val.json')
    if arm == 'b':
        pipeline = _load_config(config).train_dataloader.dataset.pipeline
        out['train_dataloader']['dataset']['pipeline'] = augmented_pipeline(pipeline)
    elif arm != 'a':
        raise ValueError(f"arm: expected 'a' or 'b', got {arm!r}")
    if recipe.quick:
        key = 'max_epochs' if recipe.by_epoch else 'max_iters'
        out['train_cfg'] = {key: recipe.length, 'val_interval': recipe.val_interval}
        out['train_dataloader']['batch_size'] = recipe.batch_size
    elif stretched_from(recipe, config):   # --epochs
        out.update(scaled_schedule(_load_config(config), recipe.length))
    return out


def run_config(recipe: Recipe, data_root: str, arm: str = 'a', seed: int = 0,
               config: str = BASE_CONFIG):
    """``config`` loaded with a run's overrides (a Config; what the run config file holds)."""
    cfg = _load_config(config)
    cfg.merge_from_dict(run_overrides(recipe, data_root, seed, arm, config))
    return cfg


def write_run_config(path: str, variant_config: str, overrides: dict) -> str:
    """Write ``_base_ = variant_config`` plus ``overrides`` to ``path``; return its text.

    Raises:
        ValueError: ``path`` already holds another run config (the recipe changed under
            an unfinished run: its checkpoint would resume with other settings).
    """
    lines = ['# Written by mmdcn_plugin.study: the variant\'s quick-start config plus the '
             'run\'s own settings.', f'_base_ = {variant_config!r}']
    lines += [f'{key} = {pprint.pformat(value, width=90, sort_dicts=False)}'
              for key, value in overrides.items()]
    text = '\n'.join(lines) + '\n'
    if osp.isfile(path):
        with open(path) as f:
            if f.read() != text:
                raise ValueError(f'{path} holds another run config than this run\'s (the '
                                 'recipe changed under an unfinished run); remove its folder '
                                 'to retrain it with the current recipe')
        return text
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return text


def dataset_root(out_dir: str, recipe: Recipe, deformation: str = DEFORMATION) -> str:
    """Where the study keeps its generated dataset of ``deformation``."""
    return osp.join(out_dir, 'data', f'{deformation}_{recipe.num_train}x{recipe.num_val}_'
                    f'{recipe.image_size}px')


def ensure_dataset(out_dir: str, recipe: Recipe, log=print,
                   deformation: str = DEFORMATION) -> str:
    """Generate the study's dataset of ``deformation`` once (generator seed 0); its root."""
    from ..synthetic import ensure_synthetic_coco
    if deformation not in DEFORMATION_LEVELS:
        raise ValueError(f'deformation: expected one of {list(DEFORMATION_LEVELS)}, got '
                         f'{deformation!r}')
    return ensure_synthetic_coco(dataset_root(out_dir, recipe, deformation), recipe.num_train,
                                 recipe.num_val, recipe.image_size, deformation, DATA_SEED,
                                 log)
