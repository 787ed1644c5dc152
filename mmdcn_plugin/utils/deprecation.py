"""Old public names kept importable for one deprecation cycle, with a warning."""
import warnings
from typing import Any, Callable, Dict, Tuple


def deprecated_aliases(module_name: str,
                       aliases: Dict[str, Tuple[Any, str]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` serving each old name of ``aliases``.

    Args:
        module_name (str): the module's ``__name__``, for the ``AttributeError``.
        aliases (dict): ``{old_name: (value, message)}``; reading ``module.old_name``
            warns ``message`` (``DeprecationWarning``, pointing at the reader) and
            returns ``value``.

    Example::

        __getattr__ = deprecated_aliases(__name__, {'OLD': (NEW, 'OLD is now NEW')})
    """
    def __getattr__(name: str) -> Any:
        if name in aliases:
            value, message = aliases[name]
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            return value
        raise AttributeError(f'module {module_name!r} has no attribute {name!r}')
    return __getattr__
