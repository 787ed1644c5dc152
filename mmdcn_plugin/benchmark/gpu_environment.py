"""What the GPU check records of the machine: GPU, driver, versions, TF32 switches, the
backends that run on each device, the commit (:mod:`.gpu_check`'s ``environment`` step)."""
import json
import os
import os.path as osp
import subprocess
import warnings
from typing import Dict, Optional, Sequence

from ..utils import write_text_atomic
from .gpu_steps import _now


def _command_output(argv: Sequence[str], cwd: Optional[str] = None) -> Optional[str]:
    try:
        out = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> Optional[str]:
    from importlib import metadata
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(root: str) -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes), else the
    ``MMDCN_GIT_COMMIT`` environment variable (a copied tree has no ``.git``)."""
    commit = _command_output(['git', 'rev-parse', 'HEAD'], cwd=root)
    if commit:
        dirty = _command_output(['git', 'status', '--porcelain', '--untracked-files=no'],
                                cwd=root)
        return commit + ('+dirty' if dirty else '')
    return os.environ.get('MMDCN_GIT_COMMIT') or 'unknown (no git here; set MMDCN_GIT_COMMIT)'


def collect_environment(root: str) -> dict:
    """What the report says about the machine.  Never calls mmcv's info functions
    (``get_compiling_cuda_version`` ends the process with some source builds)."""
    import platform

    import torch

    from ..utils import machine_line
    from ..utils.tf32 import cudnn_conv_tf32, matmul_tf32
    env = dict(date=_now(), commit=git_commit(root), host=platform.node(),
               python=platform.python_version(), cpu=machine_line(),
               torch=torch.__version__, torch_cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
               else None,
               cuda_available=torch.cuda.is_available())
    # numpy too: the machine's image has its own (2.5 on the lent GPUs), not the pins'.
    for package in ('mmcv', 'mmengine', 'mmdet', 'torchvision', 'triton', 'numpy',
                    'pycocotools', 'onnxruntime'):
        env[package] = _version(package)
    env['tf32'] = dict(cudnn_allow_tf32=cudnn_conv_tf32(), matmul_allow_tf32=matmul_tf32(),
                       cudnn_benchmark=bool(torch.backends.cudnn.benchmark))
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                   gpu_capability='.'.join(map(str, torch.cuda.get_device_capability(0))),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1))
    smi = _command_output(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'])
    env['driver'] = smi.splitlines()[0] if smi else None
    nvcc = _command_output(['nvcc', '--version'])
    env['nvcc'] = nvcc.splitlines()[-1] if nvcc else None
    return env


def backends_by_device() -> Dict[str, Dict[str, str]]:
    """device -> backend -> ``'runs'`` or why not, by the public resolver (on CUDA that
    runs the Triton and mmcv probes: a crash there ends this process, which is why the
    environment is collected in a subprocess); what ``'auto'`` picks; and, under
    ``'probes'``, the warnings of a probe that failed (why ``'auto'`` took another)."""
    import torch

    from ..ops.backends import BACKENDS, resolve_backend
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    out: Dict[str, Dict[str, str]] = {}
    for device in devices:
        dev = torch.device(device)
        table = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', RuntimeWarning)
            for name in ['auto'] + list(BACKENDS):  # 'auto' first: it runs the probes
                try:
                    picked = resolve_backend(name, dev)
                    table[name] = 'runs' if name != 'auto' else f'picks {picked}'
                except (RuntimeError, ValueError) as e:
                    table[name] = f'no: {e}'
        probes = [str(w.message) for w in caught if 'probe' in str(w.message)]
        if probes:
            table['probes'] = '; '.join(probes)
        out[device] = table
    return out


def write_environment(path: str, root: str) -> dict:
    """:func:`collect_environment` printed and written to ``path`` (JSON), then again
    with ``backends`` (:func:`backends_by_device`): should probing a backend end the
    process, the rest is on disk already."""
    env = collect_environment(root)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    for key, value in env.items():
        print(f'{key}: {value}', flush=True)
    write_text_atomic(path, json.dumps(env, indent=2))
    env['backends'] = backends_by_device()
    print(f"backends: {env['backends']}", flush=True)
    write_text_atomic(path, json.dumps(env, indent=2))
    return env


# -- running a step ---------------------------------------------------------------------
