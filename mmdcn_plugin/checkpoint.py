"""Make MMEngine's own checkpoints load under torch >= 2.6 without ``weights_only=False``.

torch 2.6 made ``torch.load(..., weights_only=True)`` the default.  MMEngine 0.10.7
calls ``torch.load`` without the argument, and the checkpoints its Runner writes
hold more than tensors: the message hub's ``HistoryBuffer`` objects (whose pickles
reach the statistic methods ``min``/``max``/``current``/``mean`` through
``builtins.getattr``, pickle protocol 2's way of naming a class attribute) and
numpy scalars and arrays in ``meta`` and in the buffers.  So resume, ``test.py``
and ``load_from`` all die with ``Unsupported global: ...HistoryBuffer``.

The fix keeps the restricted unpickler and adds exactly those globals to its
allowlist (``torch.serialization.add_safe_globals``):

* ``HistoryBuffer`` itself: a plain data holder rebuilt from its ``__dict__``;
* ``builtins.getattr`` **replaced by** :func:`history_buffer_getattr`, which only
  returns a statistic method registered on ``HistoryBuffer`` and refuses any other
  object or name.  Allowlisting the real ``getattr`` would let a pickle fetch any
  attribute of any allowlisted object, a known path to code execution;
* numpy's scalar/array reconstruction functions and dtypes, which rebuild plain
  numbers and arrays (object arrays still pass through the restricted unpickler).

Everything else stays forbidden: a pickle whose ``__reduce__`` returns
``os.system`` is refused by plain ``torch.load`` and by MMEngine's loader alike.
"""
import pickle

import numpy as np
import torch

__all__ = ['history_buffer_getattr', 'SAFE_GLOBALS', 'register_safe_globals']


def _history_buffer_cls():
    from mmengine.logging.history_buffer import HistoryBuffer
    return HistoryBuffer


# HistoryBuffer registers these in its first __init__; a fresh process (tools/test.py)
# loads a checkpoint before any buffer exists, so they are listed here too.
DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(obj, name):
    """``getattr`` restricted to ``HistoryBuffer``'s statistic methods.

    Allowed: the default statistics and any registered with
    ``HistoryBuffer.register_statistics``.  Stands in for ``builtins.getattr`` while
    ``torch.load`` unpickles with ``weights_only=True``; raises
    ``pickle.UnpicklingError`` for anything else.
    """
    cls = _history_buffer_cls()
    allowed = set(DEFAULT_STATISTICS) | set(cls._statistics_methods)
    if obj is cls and isinstance(name, str) and name in allowed:
        return getattr(cls, name)
    raise pickle.UnpicklingError(
        f'mmdcn_plugin refuses getattr({getattr(obj, "__name__", type(obj).__name__)}, '
        f'{name!r}) while loading a checkpoint: only the statistic methods of '
        f'mmengine.logging.HistoryBuffer ({sorted(allowed)}) are allowed')


def _numpy_globals():
    """numpy's pickling entry points for scalars, dtypes and arrays (numpy 1 and 2)."""
    try:  # numpy >= 2 moved the implementation to numpy._core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found = [multiarray.scalar, multiarray._reconstruct, np.ndarray, np.dtype]
    for kind in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                 np.uint32, np.uint64, np.float16, np.float32, np.float64):
        found.append(type(np.dtype(kind)))  # e.g. numpy.dtypes.Float64DType
    return found


def _safe_globals():
    # `_history_buffer_cls` imports mmengine lazily: this module is imported by the
    # package's __init__, and mmengine is already a hard dependency there.
    return [_history_buffer_cls(), (history_buffer_getattr, 'builtins.getattr'),
            *_numpy_globals()]


SAFE_GLOBALS = _safe_globals()


def register_safe_globals() -> None:
    """Add :data:`SAFE_GLOBALS` to torch's ``weights_only`` allowlist (idempotent)."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:  # torch < 2.4 has no allowlist (and loads with weights_only=False)
        add(SAFE_GLOBALS)


register_safe_globals()


def _register_local_loader() -> None:
    """Replace MMEngine's local-file checkpoint loader by one whose errors name the file.

    A run killed while ``torch.save`` writes leaves a truncated zip; torch then says
    ``PytorchStreamReader failed reading zip archive: failed finding central
    directory`` without naming the file.  This loader is MMEngine's own
    ``load_from_local`` (same scheme, same ``torch.load`` with ``weights_only``
    at its default) plus that name and what to do.  ``--resume`` without a path is
    unaffected: MMEngine writes ``last_checkpoint`` only after a save completes, so
    it already names the last complete checkpoint.
    """
    import os.path as osp
    import zipfile

    from mmengine.runner import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        try:
            return torch.load(filename, map_location=map_location)
        except pickle.UnpicklingError as e:  # refused by weights_only: keep the type
            raise pickle.UnpicklingError(f'checkpoint {filename}: {e}') from e
        except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
            size = osp.getsize(filename)
            raise RuntimeError(
                f'checkpoint {filename} ({size} bytes) cannot be read: {e}. It is probably '
                'truncated (a run killed while saving it). Resume from the previous '
                "checkpoint, e.g. `tools/train.py CONFIG --resume` (it reads the work dir's "
                "'last_checkpoint', written only after a save completes) or "
                '`--resume PATH` with an earlier epoch_*.pth / iter_*.pth.') from e


_register_local_loader()
