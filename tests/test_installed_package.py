"""The package works without the checkout around it (``pip install .`` has no ``tools/``):
the study and ``make demo`` start mmdet's tools through the package, never through the
checkout's ``tools/`` scripts."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(ROOT, 'mmdcn_plugin')
#: Modules whose job is to check the checkout's own command lines (a checkout is where
#: they run): the GPU check runs tools/train.py and tools/test.py as a user would.
CHECKS_THE_CHECKOUT = {'mmdcn_plugin/benchmark/gpu_steps.py'}


def test_no_package_module_locates_the_checkouts_tools():
    found = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            path = osp.join(folder, name)
            if name.endswith('.py') and osp.relpath(path, ROOT) not in CHECKS_THE_CHECKOUT:
                with open(path) as f:
                    for i, line in enumerate(f, 1):
                        if re.search(r"""join\([^)]*['"]tools['"]""", line):
                            found.append(f'{osp.relpath(path, ROOT)}:{i}: {line.strip()}')
    assert not found, 'library code must not shell out to tools/:\n' + '\n'.join(found)


def test_mmdets_tools_run_from_a_copy_of_the_package_alone(tmp_path):
    site = tmp_path / 'site'
    shutil.copytree(PACKAGE, site / 'mmdcn_plugin',
                    ignore=shutil.ignore_patterns('__pycache__'))
    env = dict(os.environ, PYTHONPATH=str(site))
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    proc = subprocess.run([sys.executable, '-m', 'mmdcn_plugin.engine.mmdet_tools', 'train',
                           '--help'], **run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'train config file path' in proc.stdout   # mmdet's own train.py parser
    proc = subprocess.run([sys.executable, '-c', (
        'import mmdcn_plugin, sys; from mmdcn_plugin.engine.mmdet_tools import tool_command; '
        'assert mmdcn_plugin.__file__.startswith(sys.argv[1]), mmdcn_plugin.__file__; '
        "print(' '.join(tool_command('test', 'c.py', 'k.pth')[1:]))"), str(site)], **run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == '-m mmdcn_plugin.engine.mmdet_tools test c.py k.pth'
    proc = subprocess.run([sys.executable, '-m', 'mmdcn_plugin.engine.mmdet_tools', 'fly'],
                          **run)
    assert proc.returncode != 0 and "got ['fly']" in proc.stderr
