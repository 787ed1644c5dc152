"""Register a class whose module imports something heavy, without importing it now.

``SafeCocoDataset`` subclasses mmdet's ``CocoDataset`` and ``SafeCocoMetric`` its
``CocoMetric``; importing either pulls in ``mmdet.datasets`` and with it mmcv's
compiled ops, which ``import mmdcn_plugin`` must not load.  MMEngine's registries
already solve this for mmdet's own classes: a registry made with
``locations=['mmdet.datasets']`` imports those modules the first time anything is
looked up in it (``Registry.get`` calls ``import_from_location``).  We add our module
to those locations, so the first lookup registers the real class, and
``DATASETS.get('SafeCocoDataset')`` returns the class itself.

Until that first lookup the name is held by a small builder, so that
``'SafeCocoDataset' in DATASETS.module_dict`` is true right after import; the class
replaces it when its module is imported (:func:`register_class`).
"""
import importlib
import sys

_PLACEHOLDER_FLAG = '_mmdcn_lazy_placeholder'


def _registry_locations(registry) -> list:
    # mmengine 0.10.7: Registry keeps the modules it imports on first lookup in
    # `_locations` and whether it did in `_imported` (both private; checked by
    # tests/test_bad_data.py::test_lazy_registration_uses_mmengine_internals).
    return registry._locations


def _registry_imported(registry) -> bool:
    return registry._imported


def _add_registry_location(registry, module: str) -> None:
    # A new list: the registry may share the one it was given.
    registry._locations = [*_registry_locations(registry), module]


def register_lazily(registry, name: str, module: str) -> None:
    """Make ``registry.get(name)`` import ``module``, which registers the class ``name``.

    ``module`` must call :func:`register_class` for the class.  When the registry has
    already imported its locations (so the heavy import has happened anyway), or the
    module is loaded, it is imported at once.
    """
    if module in sys.modules or _registry_imported(registry):
        importlib.import_module(module)
        return
    if name not in registry.module_dict:
        def build(*args, **kwargs):
            return getattr(importlib.import_module(module), name)(*args, **kwargs)
        build.__name__ = name
        build.__doc__ = f'Builds {module}.{name} (imported on first use).'
        setattr(build, _PLACEHOLDER_FLAG, True)
        registry.register_module(name=name, module=build)
    if module not in _registry_locations(registry):
        _add_registry_location(registry, module)


def register_class(registry):
    """Decorator: register the class under its name, replacing :func:`register_lazily`'s
    placeholder; any other holder of the name is an error, as in ``register_module``."""
    def register(cls: type) -> type:
        current = registry.module_dict.get(cls.__name__)
        placeholder = current is not None and getattr(current, _PLACEHOLDER_FLAG, False)
        registry.register_module(module=cls, force=placeholder or current is cls)
        return cls
    return register
