"""The robustness study: does deformable convolution buy geometric robustness?  And its
deformation study (``levels``): does DCN's gain grow with the objects' deformation?

Every variant of the quick-start Faster R-CNN (plain conv, DCNv1, DCNv2 with either
offset head) is trained with every seed in two arms, (a) on untransformed images and
(b) with random rotation, scale and shear (:mod:`mmdcn_plugin.robustness.augment`), on
the quick-start recipe (:mod:`.recipe`); each checkpoint is swept over rotation, scale
and shear and, for DCN in arm (a), measured for where its offsets go (:mod:`.sweep`,
through :mod:`mmdcn_plugin.robustness`).  One JSON per run (:mod:`.run`) makes the
grid (:mod:`.grid`) resumable across sessions; :mod:`.aggregate` and :mod:`.stats`
make the numbers, :mod:`.report` and :mod:`.plot` the report.  ``tools/study.py``
is the command line; what is compared is in :mod:`.constants`.
"""
from .aggregate import aggregate, augmentation_effects, check_same_recipe, run_areas
from .complexity import complexity, variant_complexity
from .constants import (ARMS, AUGMENTATION, BASE_CONFIG, DEFORMATION_LEVELS, METRICS,
                        OFFSET_RECIPES, QUICK, SEEDS, STAGES, SWEEPS, VARIANTS, variant_config,
                        variant_label)
from .grid import Run, StudySetup, collect, run_grid
from .recipe import (Recipe, augmented_pipeline, dataset_root, ensure_dataset,
                     offset_recipe_overrides, read_recipe, run_config, run_overrides,
                     scaled_schedule, stretched_from, write_run_config)
from .records import read_scalars
from .report import build_report
from .stats import (curve_area, fmt, mean_std, paired_difference, summarize, t_interval,
                    welch_difference)

__all__ = ['ARMS', 'AUGMENTATION', 'BASE_CONFIG', 'DEFORMATION_LEVELS', 'OFFSET_RECIPES', 'METRICS', 'QUICK', 'SEEDS', 'STAGES',
           'SWEEPS', 'VARIANTS', 'variant_config', 'variant_label', 'Recipe', 'read_recipe',
           'augmented_pipeline', 'dataset_root', 'ensure_dataset', 'offset_recipe_overrides', 'run_config', 'run_overrides',
           'scaled_schedule', 'stretched_from', 'write_run_config', 'Run', 'StudySetup',
           'collect', 'run_grid', 'read_scalars',
           'aggregate', 'augmentation_effects', 'check_same_recipe', 'run_areas', 'complexity',
           'variant_complexity', 'build_report', 'curve_area', 'fmt', 'mean_std',
           'paired_difference', 'summarize', 't_interval', 'welch_difference']
