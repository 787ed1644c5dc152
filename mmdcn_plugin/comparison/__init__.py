"""Plain vs deformable, as ``make demo`` compares them: the table, the convergence test
and the pictures.  ``tools/demo.py`` runs the trainings and evaluations and calls these."""
from .demo import MODELS, run_demo
from .figures import detections_side_by_side, plot_curves
from .records import CONVERGED_GAIN, convergence, seconds_per_iter, val_curve
from .table import COLUMNS, difference_row, format_table

__all__ = ['MODELS', 'run_demo', 'detections_side_by_side', 'plot_curves', 'CONVERGED_GAIN', 'convergence',
           'seconds_per_iter', 'val_curve', 'COLUMNS', 'difference_row', 'format_table']
