"""Test a detector: MMDetection's own ``tools/test.py`` with mmdcn_plugin imported first.

Takes exactly mmdet's arguments (``config``, ``checkpoint``, ``--work-dir``, ``--out``,
``--show-dir``, ``--cfg-options``, ``--launcher``, ...)::

    python tools/test.py CONFIG work_dirs/NAME/epoch_12.pth
"""
import sys

from mmdcn_plugin.engine.mmdet_tools import run_mmdet_tool

if __name__ == '__main__':
    sys.exit(run_mmdet_tool('test.py'))
