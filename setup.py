"""Packaging for mmdcn_plugin: deformable convolution layers for MMDetection 3.x.

The CPU kernels in ``mmdcn_plugin/csrc`` are an optional extension
(``mmdcn_plugin._deform_conv_cpu``, the ``'cpp'`` backend): when torch is not
importable here, or the compiler or torch's headers are missing, or compilation
fails, setup warns and installs the package without it, and the op falls back to
the ``'fast'`` pure-PyTorch backend.  ``MMDCN_NO_EXT=1`` skips the build.
"""
import glob
import os
import os.path as osp
import subprocess
import sys
import tempfile

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
EXT_NAME = 'mmdcn_plugin._deform_conv_cpu'


def read_version():
    namespace = {}
    with open(osp.join(HERE, 'mmdcn_plugin', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def _warn(msg):
    # pip shows a build's output only with -v; tools/setup_env.sh checks the result.
    print(f'WARNING: mmdcn_plugin: {msg}', file=sys.stderr)


def _skip_warning(why):
    _warn(f"building without the compiled CPU kernels ({why}); the 'cpp' backend will be "
          "unavailable and CPU deformable convolution uses the slower 'fast' backend")


def _compiler_accepts(flag):
    """True when the C++ compiler builds and links a trivial OpenMP program with ``flag``."""
    cxx = os.environ.get('CXX', 'c++')
    with tempfile.TemporaryDirectory() as tmp:
        src = osp.join(tmp, 'probe.cpp')
        with open(src, 'w') as f:
            f.write('#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n')
        try:
            return subprocess.run([cxx, flag, src, '-o', osp.join(tmp, 'probe')],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def extension_setup():
    """``(ext_modules, cmdclass)``: the CPU kernels, or nothing with a warning."""
    if os.environ.get('MMDCN_NO_EXT', '0') not in ('', '0'):
        _skip_warning('MMDCN_NO_EXT is set')
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception as exc:  # torch missing or broken at setup time
        _skip_warning(f'torch is not importable at setup time: {exc!r}')
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """Build the extension if possible; never fail the install because of it."""

        def run(self):
            try:
                super().run()
            except Exception as exc:
                _skip_warning(f'the build failed: {exc!r}')

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:
                _skip_warning(f'compiling {ext.name} failed: {exc!r}')

    # at::parallel_for is inlined into the extension as an OpenMP region: without
    # OpenMP the kernels run on one thread.  -fopenmp links libgomp by its soname,
    # which resolves to the copy torch has already loaded.
    openmp = ['-fopenmp'] if _compiler_accepts('-fopenmp') else []
    if not openmp:
        _warn('the C++ compiler did not build an OpenMP test program with -fopenmp; the '
              'CPU kernels will run on one thread')
    # setuptools wants source paths relative to the project (pip runs setup.py there).
    sources = sorted(glob.glob(osp.join('mmdcn_plugin', 'csrc', '*.cpp')))
    if not sources:
        _skip_warning(f'no sources in mmdcn_plugin/csrc under {os.getcwd()}')
        return [], {}
    ext = CppExtension(EXT_NAME, sources,
                       extra_compile_args={'cxx': ['-O3', '-g0'] + openmp},
                       extra_link_args=openmp)
    return [ext], {'build_ext': OptionalBuildExtension.with_options(use_ninja=False)}


ext_modules, cmdclass = extension_setup()

setup(
    name='mmdcn_plugin',
    version=read_version(),
    description='Deformable convolution (DCNv1, DCNv2, separable offset heads) '
    'for MMDetection 3.x as a plugin',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdcn_plugin', 'mmdcn_plugin.*']),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
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
        # onnx/onnxruntime: tools/export_onnx.py and its tests (numpy 2 needs these minima;
        # onnxruntime runs the opset-19 DeformConv natively from 1.25); onnxscript: torch's
        # dynamo exporter (torch 2.13 tested with onnx 1.23, onnxruntime 1.32, onnxscript 0.7).
        # triton: the 'triton' backend's kernels, tested on the CPU by its interpreter
        # (Linux wheels only; elsewhere the backend reports itself unavailable).
        'dev': ['pytest>=7', 'pytest-timeout', 'onnx>=1.17', 'onnxruntime>=1.25',
                'onnxscript>=0.5', "triton==3.9.0; platform_system == 'Linux'"],
    },
    license='Apache-2.0',
    zip_safe=False,
)
