"""Run one of MMDetection's own tools (shipped in ``mmdet/.mim/tools``) unchanged.

    python -m mmdcn_plugin.engine.mmdet_tools train CONFIG [mmdet's train.py arguments]
    python -m mmdcn_plugin.engine.mmdet_tools test CONFIG CHECKPOINT [...]

is what ``tools/train.py`` and ``tools/test.py`` run, and what the study and ``make
demo`` start in their child processes: it needs the installed package and mmdet only,
no checkout.

The plugin is imported first, so its layers are registered and MMEngine's
checkpoints load under torch >= 2.6 (see ``mmdcn_plugin/checkpoint.py``) even for
configs without ``custom_imports``.  On a machine without CUDA, a run launched by
torchrun (``--launcher pytorch``) gets a gloo process group and a DDP wrapper that
accepts CPU modules (see ``mmdcn_plugin/engine/cpu_distributed.py``).  The tool's
own ``main()`` then parses the command line: nothing of mmdet's logic is copied.
"""
import importlib.util
import os.path as osp
import sys


def mmdet_tool_path(name: str) -> str:
    import mmdet
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"MMDetection's {name} was expected at {path} (installed with mmdet from pip); "
            'reinstall mmdet==3.3.0')
    return path


def _launcher(argv):
    for i, arg in enumerate(argv):
        if arg == '--launcher' and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith('--launcher='):
            return arg.split('=', 1)[1]
    return 'none'


def adapt_for_cpu_distributed(argv):
    """Return argv, extended for a gloo run when distributed without CUDA."""
    import torch
    launcher = _launcher(argv)
    if launcher == 'none' or torch.cuda.is_available():
        return argv
    if launcher != 'pytorch':
        raise SystemExit(f'--launcher {launcher} needs GPUs (MMEngine binds one per process); '
                         'on a machine without CUDA use --launcher pytorch '
                         '(tools/dist_train.sh or torchrun), which runs on gloo')
    from mmdcn_plugin.engine import CPU_DIST_CFG_OPTIONS, init_cpu_distributed
    init_cpu_distributed()
    return list(argv) + ['--cfg-options', *CPU_DIST_CFG_OPTIONS]


def run_mmdet_tool(name: str, argv=None) -> int:
    """Run mmdet's ``name`` (``'train.py'``, ``'test.py'``) with ``argv`` (default: this
    process's arguments).  A rank of a CPU-distributed (gloo) run ends here, with exit
    status 0, once the tool returns (see ``exit_cpu_distributed``)."""
    import mmdcn_plugin  # noqa: F401  (registers the layers; safe checkpoint loading)
    path = mmdet_tool_path(name)
    argv = sys.argv[1:] if argv is None else list(argv)
    sys.argv = [path] + adapt_for_cpu_distributed(argv)
    spec = importlib.util.spec_from_file_location(f'mmdet_tools_{name[:-3]}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    from mmdcn_plugin.engine import exit_cpu_distributed
    exit_cpu_distributed()
    return 0


#: ``python -m mmdcn_plugin.engine.mmdet_tools NAME ...``: the tools it runs.
TOOLS = ('train', 'test')


def tool_command(name: str, *args: str) -> list:
    """The command line of a child process running mmdet's ``name`` tool through this
    module: ``[python, -m, mmdcn_plugin.engine.mmdet_tools, name, *args]``."""
    if name not in TOOLS:
        raise ValueError(f'name: expected one of {list(TOOLS)}, got {name!r}')
    return [sys.executable, '-m', 'mmdcn_plugin.engine.mmdet_tools', name, *args]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in TOOLS:
        raise SystemExit(f'usage: python -m mmdcn_plugin.engine.mmdet_tools {{{",".join(TOOLS)}}} '
                         f'ARGS...; got {argv[:1] or "nothing"}')
    return run_mmdet_tool(argv[0] + '.py', argv[1:])


if __name__ == '__main__':
    sys.exit(main())
