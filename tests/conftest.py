import pytest


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False,
                     help='also run tests marked slow')


def pytest_configure(config):
    # `make test` (what CI runs) skips these; every feature a slow test checks is
    # also checked there on a short schedule (e.g. SIGKILL/resume over 2 epochs, not 6;
    # one variant of the study's --quick grid, not both).  `make test-all` runs both.
    config.addinivalue_line('markers', 'slow: takes minutes; the longer schedule of '
                            'something make test checks on a short one; run with --runslow')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow'):
        return
    skip = pytest.mark.skip(reason='slow: run with --runslow (make test-all)')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def mmdet_scope():
    """Every test runs under MMDetection's default scope, whatever ran before it."""
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope('mmdet')
    yield
    # A test that switched scope must not leak it into the next one.
    init_default_scope('mmdet')
