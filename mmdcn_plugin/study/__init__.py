"""The deformation study: does deformable convolution help, and which offset head?

For every deformation level of the embedded dataset it trains every variant of
the quick-start Faster R-CNN with every seed (:mod:`.grid`), and reports mean,
std and Welch's t-test per cell (:mod:`.stats`) as Markdown, CSV, JSON
(:mod:`.report`) and a plot (:mod:`.plot`), with each variant's cost
(:mod:`.complexity`).  ``tools/study.py`` is the command line; what is compared
is in :mod:`.constants`.
"""
from .complexity import complexity, variant_complexity
from .constants import (GRID_KEYS, GRIDS, IMAGE_SIZE, LEVELS, METRICS, QUICKSTART,
                        VARIANTS, variant_config, variant_label)
from .grid import (Run, StudySetup, collect, ensure_dataset, make_grid, milestones,
                   read_scalars, run_grid, train_overrides)
from .report import build_report
from .stats import fmt, mean_std, welch_p

__all__ = ['VARIANTS', 'LEVELS', 'METRICS', 'GRIDS', 'GRID_KEYS', 'IMAGE_SIZE', 'QUICKSTART',
           'variant_config', 'variant_label', 'StudySetup', 'Run', 'make_grid',
           'milestones', 'ensure_dataset', 'train_overrides', 'read_scalars', 'run_grid',
           'collect', 'complexity', 'variant_complexity', 'build_report', 'mean_std',
           'welch_p', 'fmt']
