"""What the robustness study compares: variants, arms, sweeps, the quick schedule.

The lowest module of :mod:`mmdcn_plugin.study`: every other one imports from it,
it imports none of them.
"""
import os.path as osp

from ..synthetic import DEFORMATION_LEVELS  # noqa: F401  (the generator's; re-exported)

# The study trains the checkout's quick-start configs (through the package's
# mmdcn_plugin.engine.mmdet_tools, not the checkout's tools/).
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart')
#: The recipe (schedule, image counts, image size) is this config's; the variants
#: change only the backbone's c3-c5 3x3 convs.
BASE_CONFIG = osp.join(QUICKSTART, 'faster-rcnn_r50-narrow_fpn_synthetic.py')

# name -> (config in configs/quickstart, label for tables).  The max_offset=4 variant
# is left out: the trained offsets average 0.1-0.2 px and peak near 3 px (the report's
# "How far the offsets move"), so a smooth bound of 4 px would change almost nothing.
VARIANTS = {
    'baseline': ('faster-rcnn_r50-narrow_fpn_synthetic.py', 'plain conv (baseline)'),
    'dcnv1': ('faster-rcnn_r50-narrow-dcnv1-c3-c5_fpn_synthetic.py', 'DCNv1'),
    'dcnv2': ('faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py',
              'DCNv2, ConvOffsetHead'),
    'dcnv2-sep': ('faster-rcnn_r50-narrow-dcnv2-sep-c3-c5_fpn_synthetic.py',
                  'DCNv2, SeparableOffsetHead'),
}
#: (a) trained on untransformed data; (b) trained with the sweep's transforms as
#: augmentation (the known confound of the DCN-vs-plain comparisons).
ARMS = {'a': 'trained on untransformed images',
        'b': 'trained with random rotation, scale and shear'}
#: The study's one dataset is the embedded generator's ``moderate`` deformation (the
#: demo's data); ``--levels`` trains on each of several of ``DEFORMATION_LEVELS``.
DEFORMATION = 'moderate'
DATA_SEED = 0

#: How the DCN variants' offset heads learn (the baseline has none).  ``slow`` is the
#: quick-start recipe, ``lr_mult=0.1``: at the full rate AdamW jittered the
#: zero-initialised heads and DCNv2 stalled (docs/recipe/, row H).  The others put the
#: heads at the full rate (``lr_mult=1``), with :class:`~mmdcn_plugin.hooks.OffsetLrRampHook`
#: holding them back early; iterations count 90 per epoch of the recipe (720 images,
#: batch 8).  ``max_offset`` bounds the offsets of the ConvOffsetHead smoothly
#: (``M * tanh(o / M)`` pixels, :class:`~mmdcn_plugin.layers.BaseOffsetHead`): at the
#: full rate, ``ramp`` threw 25-70 % of c5's points off its 4x4 map and 2 of 9 runs fell
#: at epoch 5.  docs/recipe/ records their pilots.  A recipe's settings never change
#: once it has finished runs (the study refuses them): give a new one a new name.
OFFSET_RECIPES = {
    'slow': dict(label='offset heads at lr_mult 0.1 (the quick-start recipe)',
                 lr_mult=None, ramp=None),
    'full': dict(label='offset heads at the full rate from the start', lr_mult=1.0,
                 ramp=None),
    'ramp': dict(label='offset heads at the full rate, ramped from 0 over epochs 1-2',
                 lr_mult=1.0, ramp=dict(delay=0, warmup=180)),
    'late': dict(label='offset heads at 0 for 2 epochs, then ramped to the full rate over '
                 'epoch 3', lr_mult=1.0, ramp=dict(delay=180, warmup=90)),
    'ramp-max1': dict(label='offset heads at the full rate, ramped from 0 over epochs 1-2, '
                      'offsets bounded by 1 px (tanh, per component)',
                      lr_mult=1.0, ramp=dict(delay=0, warmup=180), max_offset=1.0),
    'ramp-max2': dict(label='offset heads at the full rate, ramped from 0 over epochs 1-2, '
                      'offsets bounded by 2 px (2 tanh(o / 2), per component)',
                      lr_mult=1.0, ramp=dict(delay=0, warmup=180), max_offset=2.0),
}
#: The variants whose offset head is the ConvOffsetHead, which a recipe's ``max_offset``
#: sets (the SeparableOffsetHead variant has its own head config).
CONV_HEAD_VARIANTS = ('dcnv1', 'dcnv2')
OFFSET_RECIPE = 'slow'
SEEDS = (0, 1, 2, 3, 4)

#: The sweeps: rotate in degrees (counter-clockwise), scale as a zoom factor, shear
#: as an angle in degrees (x' = x + tan(angle) * (y - cy); 30 degrees is a factor 0.58).
SWEEPS = {
    'rotate': (0, 30, 60, 90, 120, 150, 180),
    'scale': (0.5, 0.75, 1.0, 1.5, 2.0),
    'shear': (-30, -15, 0, 15, 30),
}
#: Arm (b)'s augmentation: the ranges the sweeps cover (scale drawn log-uniformly).
AUGMENTATION = dict(type='RandomRotateScaleShear', rotate=(-180.0, 180.0), scale=(0.5, 2.0),
                    shear=(-30.0, 30.0), keep_masks=False)
#: On-object fractions: the DCN variants of arm (a), per stage, over the rotation sweep,
#: on the first this-many val images.
ON_OBJECT_IMAGES = 20
STAGES = ('c3', 'c4', 'c5')
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m')

#: `--quick`: a few iterations on a few images, sparser sweeps (the test suite's grid).
QUICK = dict(num_train=8, num_val=4, batch_size=4, iterations=2, on_object_images=2,
             variants=('baseline', 'dcnv2'), seeds=(0,),
             sweeps={'rotate': (0, 90, 180), 'scale': (0.5, 1.0, 2.0),
                     'shear': (-30, 0, 30)})


def variant_config(variant: str) -> str:
    """The path of ``variant``'s quick-start config."""
    if variant not in VARIANTS:
        raise ValueError(f'variant: expected one of {list(VARIANTS)}, got {variant!r}')
    return osp.join(QUICKSTART, VARIANTS[variant][0])


def variant_label(variant: str) -> str:
    """How tables and plots name ``variant``."""
    return VARIANTS[variant][1]


def is_deformable(variant: str) -> bool:
    """Whether ``variant`` has offset heads (every variant but the baseline)."""
    return variant != 'baseline'
