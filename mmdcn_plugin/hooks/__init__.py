"""Training hooks: watching deformable layers, and exact resume."""
from .offset_stats_hook import OffsetStats, OffsetStatsHook, offset_statistics
from .offset_visualization_hook import OffsetVisualizationHook
from .rng_state_hook import RNGStateHook

__all__ = ['OffsetStatsHook', 'OffsetStats', 'offset_statistics', 'OffsetVisualizationHook',
           'RNGStateHook']
