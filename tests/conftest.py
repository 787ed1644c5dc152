import os

import pytest
import torch

DEVICE_ENV_VAR = 'MMDCN_TEST_DEVICE'


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False,
                     help='also run tests marked slow')
    parser.addoption('--device', default=os.environ.get(DEVICE_ENV_VAR) or 'cpu',
                     help='device of the op and layer correctness tests (the `device` '
                          f'fixture): cpu (default; CI) or cuda; or set {DEVICE_ENV_VAR}')


def pytest_configure(config):
    _test_device(config)  # a bad --device stops the run before collection
    # `make test` (what CI runs) skips these; every feature a slow test checks is
    # also checked there on a short schedule (e.g. SIGKILL/resume over 2 epochs, not 6;
    # one variant of the study's --quick grid, not both).  `make test-all` runs both.
    config.addinivalue_line('markers', 'slow: takes minutes; the longer schedule of '
                            'something make test checks on a short one; run with --runslow')


def _test_device(config) -> torch.device:
    name = config.getoption('--device')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise pytest.UsageError(f'--device: expected cpu or cuda, got {name!r}') from None
    if device.type not in ('cpu', 'cuda'):
        raise pytest.UsageError(f'--device: expected cpu or cuda, got {name!r}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        # Skipping every test instead would look like a green GPU run.
        raise pytest.UsageError(f'--device {name}: torch.cuda.is_available() is False here '
                                f'(torch {torch.__version__})')
    return device


def pytest_report_header(config):
    return f'test device: {_test_device(config)} (--device or {DEVICE_ENV_VAR})'


@pytest.fixture(scope='session')
def device(request):
    """The device the op and layer correctness tests run on (``--device``).

    On CUDA, TF32 is switched off for the session: the tests compare with float32 and
    float64 references, and cuDNN convolutions use TF32 by default.
    """
    device = _test_device(request.config)
    if device.type != 'cuda':
        yield device
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield device
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


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
