"""Training hooks: watching deformable layers, and exact resume."""
from .offset_lr_ramp_hook import OffsetLrRampHook, ramp_factor
from .offset_stats_hook import OffsetStats, OffsetStatsHook, offset_statistics
from .offset_visualization_hook import OffsetVisualizationHook
from .rng_state_hook import RNGStateHook

__all__ = ['OffsetLrRampHook', 'ramp_factor', 'OffsetStatsHook', 'OffsetStats', 'offset_statistics', 'OffsetVisualizationHook',
           'RNGStateHook']
