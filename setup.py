"""Packaging for mmdcn_plugin: deformable convolution layers for MMDetection 3.x."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmdcn_plugin', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmdcn_plugin',
    version=read_version(),
    description='Deformable convolution (DCNv1, DCNv2, separable offset heads) '
    'for MMDetection 3.x as a plugin',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdcn_plugin', 'mmdcn_plugin.*']),
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.1',
        # mmdet 3.3.0 refuses any mmcv outside this range at import.
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmdet>=3.3.0,<3.4',
        'mmengine>=0.10,<1.0',
        'pycocotools',
        'numpy',
    ],
    extras_require={
        # onnx/onnxruntime: tools/export_onnx.py and its tests (numpy 2 needs these minima).
        'dev': ['pytest>=7', 'pytest-timeout', 'onnx>=1.17', 'onnxruntime>=1.19'],
    },
    license='Apache-2.0',
    zip_safe=False,
)
