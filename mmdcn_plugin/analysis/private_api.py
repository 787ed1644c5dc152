"""Every private torch / MMEngine API the FLOP counter relies on, one small function each.

MMEngine's FLOP analyzer has no public hook for "run this while tracing", and
torch has no public way for a traced function to pause the tracer.  Each use of
such an API is wrapped here, with the versions it was checked against, so that a
torch or MMEngine upgrade that moves one breaks this file and
``tests/test_flops.py::test_private_apis_*`` loudly, not the counts silently.

Checked against torch 2.13.0 and mmengine 0.10.7.
"""
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

CHECKED_WITH = 'torch 2.13.0, mmengine 0.10.7'


@contextmanager
def tracing_paused() -> Iterator[None]:
    """Switch ``torch.jit``'s tracer off inside the block, on again after it.

    Private torch API (``torch._C._get_tracing_state`` / ``_set_tracing_state``),
    the one torch.jit's own tracer uses to pause itself; checked with torch 2.13.0.
    """
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def analyzer_model(analyzer) -> nn.Module:
    """The model a :class:`mmengine.analysis.FlopAnalyzer` analyses.

    Private attribute ``_model`` of mmengine's ``JitModelAnalysis`` (no public
    accessor); checked with mmengine 0.10.7.
    """
    return analyzer._model


def analyzer_cached_stats(analyzer):
    """The analyzer's statistics if it has traced already, else ``None``.

    Private attribute ``_stats`` of mmengine's ``JitModelAnalysis``, set by its
    ``_analyze`` (which traces once and caches); checked with mmengine 0.10.7.
    """
    return analyzer._stats


def mmengine_analyze(analyzer):
    """MMEngine's own trace-and-count of ``analyzer``, whatever subclass it is.

    Returns the cached statistics when ``analyzer`` has traced already (MMEngine's
    ``_analyze`` caches them in ``_stats``).  Private method
    ``JitModelAnalysis._analyze``: every public query of the analyzer (``total``,
    ``by_module``, ...) calls it, so a subclass that overrides it wraps every trace
    (that is how :class:`~.flops.DeformableFlopAnalyzer` patches the deformable
    layers while tracing); checked with mmengine 0.10.7.
    """
    from mmengine.analysis import FlopAnalyzer
    return FlopAnalyzer._analyze(analyzer)


def format_size(value: int) -> str:
    """MMEngine's ``'1.2G'`` / ``'3.4M'`` formatting of counts, as its tables print them.

    Private function ``mmengine.analysis.print_helper._format_size``; checked with
    mmengine 0.10.7.
    """
    from mmengine.analysis.print_helper import _format_size
    return _format_size(value)


@contextmanager
def forward_replaced(module: nn.Module, forward: Callable) -> Iterator[None]:
    """Make ``module(...)`` call ``forward`` instead of its own, on this instance only.

    Relies on ``nn.Module.__call__`` looking ``self.forward`` up on the instance
    (an attribute set on the instance wins over the class's method), which torch
    does not document; checked with torch 2.13.0.  A ``forward`` the instance held
    before is put back on exit.
    """
    own = vars(module).get('forward')
    module.forward = forward
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own
