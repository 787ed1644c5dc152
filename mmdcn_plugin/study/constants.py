"""What the deformation study compares: variants, deformation levels, metrics, grids.

The lowest module of :mod:`mmdcn_plugin.study`: every other one imports from it,
it imports none of them.
"""
import os.path as osp

# The study trains the repository's quick-start configs with its tools/train.py,
# so it runs from a checkout (the package installed with `pip install -e .`).
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart')
TOOLS = osp.join(REPO_ROOT, 'tools')

# name -> (config in configs/quickstart, label for tables)
VARIANTS = {
    'baseline': ('faster-rcnn_r50-narrow_fpn_synthetic.py', 'plain conv (baseline)'),
    'dcnv1': ('faster-rcnn_r50-narrow-dcnv1-c3-c5_fpn_synthetic.py', 'DCNv1'),
    'dcnv2': ('faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py',
              'DCNv2, ConvOffsetHead'),
    'dcnv2-sep': ('faster-rcnn_r50-narrow-dcnv2-sep-c3-c5_fpn_synthetic.py',
                  'DCNv2, SeparableOffsetHead'),
    'dcnv2-sep-max4': ('faster-rcnn_r50-narrow-dcnv2-sep-max4-c3-c5_fpn_synthetic.py',
                       'DCNv2, SeparableOffsetHead, max_offset=4'),
}
LEVELS = ('none', 'moderate', 'strong')
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m')

# The grids.  `full` is what `make study` runs; its budget is stated in the README.
GRIDS = {
    'full': dict(levels=LEVELS, variants=tuple(VARIANTS), seeds=(0, 1, 2), num_train=200,
                 num_val=100, epochs=12, checkpoint_interval=4),
    'quick': dict(levels=('none', 'strong'), variants=('baseline', 'dcnv2'), seeds=(0,),
                  num_train=8, num_val=4, epochs=1, checkpoint_interval=1),
}
# The keys of a grid that a command line may override.
GRID_KEYS = ('levels', 'variants', 'seeds', 'epochs', 'num_train', 'num_val')
IMAGE_SIZE = 128  # the quick-start configs resize to 128 px


def variant_config(variant: str) -> str:
    """The path of ``variant``'s quick-start config."""
    if variant not in VARIANTS:
        raise ValueError(f'variant: expected one of {list(VARIANTS)}, got {variant!r}')
    return osp.join(QUICKSTART, VARIANTS[variant][0])


def variant_label(variant: str) -> str:
    """How tables and the plot name ``variant``."""
    return VARIANTS[variant][1]
