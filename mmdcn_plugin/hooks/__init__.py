"""Training hooks that watch deformable layers."""
from .offset_stats_hook import OffsetStats, OffsetStatsHook, offset_statistics
from .offset_visualization_hook import OffsetVisualizationHook

__all__ = ['OffsetStatsHook', 'OffsetStats', 'offset_statistics', 'OffsetVisualizationHook']
