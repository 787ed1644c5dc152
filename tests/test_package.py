"""Importing the package registers everything and loads nothing heavy."""
import subprocess
import sys

CHECK = '''
import sys
import mmdcn_plugin
from mmdet.registry import DATASETS, HOOKS, MODEL_WRAPPERS, MODELS, TRANSFORMS
names = {
    MODELS: ['DeformableConv2d', 'ConvOffsetHead', 'SeparableOffsetHead'],
    HOOKS: ['OffsetStatsHook', 'OffsetVisualizationHook', 'RNGStateHook'],
    DATASETS: ['SafeCocoDataset'],
    TRANSFORMS: ['SafeLoadImageFromFile', 'RandomRotateScaleShear'],
    MODEL_WRAPPERS: ['CPUDistributedDataParallel'],
}
missing = [(r.name, n) for r, ns in names.items() for n in ns if n not in r.module_dict]
print('missing', missing)
print('version', mmdcn_plugin.__version__)
print('heavy', [m for m in ('mmcv._ext', 'matplotlib', 'mmdet.datasets') if m in sys.modules])
'''


def test_import_registers_everything_and_stays_light():
    out = subprocess.run([sys.executable, '-c', CHECK], capture_output=True, text=True,
                         check=True).stdout
    assert 'missing []' in out
    assert 'version 0.' in out
    # mmcv's compiled extension (and mmdet.datasets, which imports it) load on first use.
    assert 'heavy []' in out, out
