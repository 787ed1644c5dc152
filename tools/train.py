"""Train a detector: MMDetection's own ``tools/train.py`` with mmdcn_plugin imported first.

Takes exactly mmdet's arguments (``config``, ``--work-dir``, ``--resume [PATH]``,
``--amp``, ``--auto-scale-lr``, ``--cfg-options``, ``--launcher``, ...)::

    python tools/train.py configs/quickstart/faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py
"""
import sys

from mmdcn_plugin.engine.mmdet_tools import run_mmdet_tool

if __name__ == '__main__':
    sys.exit(run_mmdet_tool('train.py'))
