"""What the robustness study compares: variants, arms, sweeps, the quick schedule.

The lowest module of :mod:`mmdcn_plugin.study`: every other one imports from it,
it imports none of them.
"""
import os.path as osp

# The study trains the repository's quick-start configs with its tools/train.py,
# so it runs from a checkout (the package installed with `pip install -e .`).
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart')
TOOLS = osp.join(REPO_ROOT, 'tools')
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
#: One dataset: the embedded generator's moderate deformation (the demo's data).
DEFORMATION = 'moderate'
DATA_SEED = 0
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
