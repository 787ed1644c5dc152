"""setup.py and the README promise Python 3.8+: every source file parses as Python 3.8."""
import ast
import glob
import os.path as osp
import re

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SOURCES = sorted(osp.relpath(p, ROOT) for folder in ('mmdcn_plugin', 'tools', 'configs')
                 for p in glob.glob(osp.join(ROOT, folder, '**', '*.py'), recursive=True))


def test_the_promise_is_the_same_everywhere():
    setup = open(osp.join(ROOT, 'setup.py')).read()
    readme = open(osp.join(ROOT, 'README.md')).read()
    assert "python_requires='>=3.8'" in setup
    assert re.search(r'Python 3\.8\+', readme)


@pytest.mark.parametrize('path', SOURCES)
def test_source_parses_as_python_3_8(path):
    with open(osp.join(ROOT, path)) as f:
        ast.parse(f.read(), filename=path, feature_version=(3, 8))
