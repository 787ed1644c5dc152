"""Compile the GPU tile sweep's kernels here, on a machine without a GPU, into a Triton
cache to carry to the GPU machine: its device time goes to timing, not to compiling.

    python -m mmdcn_plugin.ops.backends.triton.precompile --out DIR [--capability 90]
        [--multiprocessors 132] [--dtypes fp16,bf16,fp32] [--shapes c3,c4,c5]
    python -m mmdcn_plugin.ops.backends.triton.precompile --check DIR [--no-replay]

The sweep (:mod:`.tune`) and the stage timing (:mod:`.stages`) make about 490
launches of 450 distinct kernels, each compiled once per shape (Triton specialises
integer arguments on their divisibility by 16, and c3, c4 and c5 differ there), at
0.4-1.5 s a compile: most of the sweep's time budget on the GPU machine.  The first
form makes exactly those launches, from the same code, with Triton's ``warmup``
(compile, never launch) under a stand-in driver that names the target GPU, so each
compile lands in ``DIR`` under the key the GPU machine computes for the same launch,
and a run there with ``TRITON_CACHE_DIR=DIR`` loads it instead of compiling.  Of the
compiler's stages only the binary is kept (``TRITON_STORE_BINARY_ONLY``).

The keys hold the Triton build (its own files and its ptxas), the settings that change
what it compiles (:func:`key_environment`), and through the weight gradient's split the
GPU's multiprocessor count, so this must run under the GPU machine's Triton and Python
(3.6.0, cp312): ``DIR/manifest.json`` records all of them, and ``--check DIR`` on the
GPU machine says whether they match there, then makes the op's own launches of one
shape (:func:`replay`) and counts how many were loaded rather than compiled.  A miss
costs nothing but the compile that would have happened anyway.
"""
import argparse
import contextlib
import hashlib
import json
import os
import time
from collections import defaultdict
from typing import Dict, Iterator, List, Tuple

import torch

from ....utils import write_json_atomic
from ...checks import check_deform_conv2d_args
from . import launch, stages
from .tune import CANDIDATES, DTYPES, SHAPES, kernel_runs, parse_lists, problem

MANIFEST = 'manifest.json'
#: H100 SXM and H200 alike.
MULTIPROCESSORS = 132
_KERNELS = ('deform_conv_forward_kernel', 'deform_conv_backward_data_kernel',
            'deform_conv_backward_weight_kernel')


class CompileOnlyDriver:
    """Triton's active driver, as far as compiling needs one: device 0, stream 0, and
    the target GPU; nothing here can launch."""

    def __init__(self, capability: int):
        from triton.backends.compiler import GPUTarget
        self.target = GPUTarget('cuda', capability, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device=None) -> int:
        return 0

    def get_current_target(self):
        return self.target


class _Warmup:
    """Stands in for a kernel in :mod:`.launch`: ``kernel[grid](*args, **meta)`` compiles
    (``JITFunction.warmup``), launches nothing, and appends the compiled kernel (its
    ``asm['cubin']``, ``metadata``) to ``compiled``."""

    def __init__(self, kernel, compiled: List):
        self.kernel = kernel
        self.compiled = compiled

    def __getitem__(self, grid):
        def compile_it(*args, **kwargs):
            self.compiled.append(self.kernel.warmup(*args, grid=grid, **kwargs))
        return compile_it


@contextlib.contextmanager
def compile_only(capability: int, multiprocessors: int) -> Iterator[List]:
    """Within: :mod:`.launch`'s kernels compile for ``capability`` without launching,
    and the weight gradient splits its work as on a GPU with ``multiprocessors``.

    Yields the list each compiled kernel is appended to (every function of
    :mod:`.launch` makes one launch).
    """
    from triton.runtime import driver
    if launch.INTERPRETED:
        raise RuntimeError('precompile: compiles for a GPU, which Triton does not while '
                           'TRITON_INTERPRET=1 is set; unset it')
    saved = {name: getattr(launch, name) for name in _KERNELS + ('weight_splits',)}
    # Restored as it was: reset_active() would create the default driver, which fails
    # on a machine without a GPU.
    previous = driver._active
    driver.set_active(CompileOnlyDriver(capability))
    # Triton keeps a device's target and compiled kernels in memory: fresh ones here, so
    # no kernel compiled for another target is reused, in or after this block.
    jit_caches = {name: saved[name].device_caches for name in _KERNELS}
    compiled: List = []
    try:
        for name in _KERNELS:
            saved[name].device_caches = defaultdict(saved[name].create_binder)
            setattr(launch, name, _Warmup(saved[name], compiled))
        launch.weight_splits = (lambda geo, t, tiles, device:
                                launch.gpu_weight_splits(geo, t, tiles, multiprocessors))
        yield compiled
    finally:
        for name, value in saved.items():
            setattr(launch, name, value)
        for name, caches in jit_caches.items():
            saved[name].device_caches = caches
        driver._active = previous
        launch.TILE_OVERRIDES.clear()
        launch.LEAVE_OUT.clear()
        launch.PAD_GRAD_OUT = False


def sweep_launches(dtypes: List[str], shapes: List[str], kernels=tuple(CANDIDATES),
                   candidates_only: bool = False) -> Iterator[Dict]:
    """Make every launch of the sweep and of the stage timing, one at a time, on CPU
    tensors of the real shapes.  Call under :func:`compile_only`.

    Yields, after each launch, what it was: ``dtype``, ``shape``, ``kernel`` ('forward',
    'data', 'weight'), ``tiles`` and ``variant``: ``'candidate'`` (the sweep's),
    ``'deterministic'`` (the input gradient's fixed-point scatter at that candidate: the
    whole op's deterministic backward uses the fastest tiles, unknown here),
    ``'padded-grad-out'`` (the gradients' :data:`.launch.PAD_GRAD_OUT` experiment at that
    candidate, where the shape's pixel count calls for padding) or a stage
    of :data:`.stages.KERNEL_VARIANTS` at ``choose_tiles``'s tiles (the GPU run times
    the stages in fp16; here every dtype).  ``kernels`` and ``candidates_only`` leave
    the other launches out.
    """
    for dname in dtypes:
        dtype = DTYPES[dname]
        for sname in shapes:
            tensors = problem(SHAPES[sname], dtype, torch.device('cpu'))
            x, offset, mask, weight, grad_out = tensors
            geo = check_deform_conv2d_args(x, offset, weight, None, 1, 1, 1, mask)
            runs = kernel_runs(*tensors, geo)
            deterministic = kernel_runs(*tensors, geo, deterministic=True)['data']

            def made(kernel, variant):
                return dict(dtype=dname, shape=sname, kernel=kernel, variant=variant,
                            tiles=list(launch.choose_tiles(geo, dtype, kernel)))
            for kernel in kernels:
                for tiles in CANDIDATES[kernel]:
                    launch.TILE_OVERRIDES[kernel] = tiles
                    runs[kernel]()
                    yield made(kernel, 'candidate')
                    if candidates_only:
                        continue
                    if kernel == 'data':
                        deterministic()
                        yield made(kernel, 'deterministic')
                    if kernel != 'forward' and (geo.out_size[0] * geo.out_size[1]
                                                % launch.GRAD_OUT_ALIGN):
                        with launch.grad_out_padded():
                            runs[kernel]()
                        yield made(kernel, 'padded-grad-out')
                launch.TILE_OVERRIDES.pop(kernel, None)
            if candidates_only:
                continue
            for kernel, variants in stages.KERNEL_VARIANTS.items():
                for variant, setting in variants.items():
                    launch.LEAVE_OUT.clear()
                    if kernel != 'data':
                        launch.LEAVE_OUT[kernel] = setting
                    stages.kernel_run(kernel, setting, tensors, geo)()
                    yield made(kernel, variant)
                launch.LEAVE_OUT.clear()


def describe(launched: Dict, variant: bool = True) -> str:
    """One line for a launch of :func:`sweep_launches` (without its variant if not
    ``variant``)."""
    tiles = 'x'.join(map(str, launched['tiles']))
    line = f"{launched['dtype']} {launched['shape']} {launched['kernel']:7s} {tiles:15s}"
    return f"{line} {launched['variant']}" if variant else line


def triton_keys(capability: int) -> Dict[str, str]:
    """What a Triton cache key holds of the machine: Triton's build (its files, the
    libtriton it loads) and the backend (ptxas version, target); sha256 of each."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.cache import triton_key
    backend = make_backend(GPUTarget('cuda', capability, 32)).hash()
    return {'triton': triton.__version__,
            'triton_key': hashlib.sha256(triton_key().encode()).hexdigest(),
            'backend_key': hashlib.sha256(backend.encode()).hexdigest()}


def key_environment() -> Dict[str, str]:
    """The settings of this process that Triton puts into a kernel's cache key besides
    the source and the target: the environment variables its ``libtriton`` names as
    cache-invalidating (only those set) and the ``debug`` and instrumentation options
    a launch takes from ``TRITON_DEBUG`` and ``TRITON_INSTRUMENTATION_MODE``."""
    from triton import knobs
    from triton._C.libtriton import get_cache_invalidating_env_vars
    env = {k: str(v) for k, v in get_cache_invalidating_env_vars().items()}
    env['debug'] = str(bool(knobs.runtime.debug))
    env['instrumentation_mode'] = str(knobs.compilation.instrumentation_mode)
    return env


@contextlib.contextmanager
def _cache_in(cache_dir: str):
    """Within: Triton's cache is ``cache_dir``, binaries only; the environment after is
    as before."""
    saved = {k: os.environ.get(k) for k in ('TRITON_CACHE_DIR', 'TRITON_STORE_BINARY_ONLY')}
    os.environ.update(TRITON_CACHE_DIR=cache_dir, TRITON_STORE_BINARY_ONLY='1')
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def precompile(out: str, capability: int, multiprocessors: int, dtypes: List[str],
               shapes: List[str]) -> Dict:
    """Fill the Triton cache ``out`` (see the module docstring); returns the manifest."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    start = time.monotonic()
    launches = []
    with _cache_in(out), compile_only(capability, multiprocessors):
        for launched in sweep_launches(dtypes, shapes):
            launches.append(launched)
            print(f'{len(launches):4d} {time.monotonic() - start:6.1f} s  '
                  f'{describe(launched)}', flush=True)
    manifest = dict(triton_keys(capability), environment=key_environment(),
                    capability=capability, multiprocessors=multiprocessors, dtypes=dtypes,
                    shapes=shapes, launches=len(launches), entries=len(_entries(out)),
                    seconds=round(time.monotonic() - start, 1),
                    torch=torch.__version__)
    write_json_atomic(os.path.join(out, MANIFEST), manifest)
    return manifest


def replay(cache_dir: str, manifest: Dict) -> Tuple[int, int]:
    """Make the op's own launches (``choose_tiles``'s tiles: what the op, and so the GPU
    check's op benchmarks, runs) of the forward, input and weight gradients, for the
    manifest's first dtype at its last shape, as compiles for the manifest's GPU into
    ``cache_dir``.  Returns (launches, kernels compiled): 0 compiled means each was
    loaded from the cache, so the keys computed here are those of the machine that
    filled it."""
    dtype, shape = DTYPES[manifest['dtypes'][0]], SHAPES[manifest['shapes'][-1]]
    tensors = problem(shape, dtype, torch.device('cpu'))
    geo = check_deform_conv2d_args(tensors[0], tensors[1], tensors[3], None, 1, 1, 1,
                                   tensors[2])
    before = len(_entries(cache_dir))
    with _cache_in(os.path.abspath(cache_dir)), \
            compile_only(manifest['capability'], manifest['multiprocessors']) as compiled:
        for run in kernel_runs(*tensors, geo).values():
            run()
    return len(compiled), len(_entries(cache_dir)) - before


def _entries(cache_dir: str) -> List[str]:
    return [d for d in os.listdir(cache_dir) if os.path.isdir(os.path.join(cache_dir, d))]


def check(cache_dir: str, replay_launches: bool = True) -> bool:
    """Print whether the cache in ``cache_dir`` fits this machine (built by this
    Triton under the same settings; on a GPU, the manifest's capability and
    multiprocessor count), how many entries it holds and, with ``replay_launches``,
    how many of :func:`replay`'s launches it served; True when it fits."""
    path = os.path.join(cache_dir, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'precompile --check: expected {MANIFEST} in {cache_dir!r}, '
                                'written by precompile --out; it has none')
    with open(path) as f:
        manifest = json.load(f)
    here = triton_keys(manifest['capability'])
    differ = [k for k in here if here[k] != manifest.get(k)]
    env_here, env_there = key_environment(), manifest.get('environment', {})
    differ += [f'{k}={env_here.get(k)} here, {env_there.get(k)} there'
               for k in sorted(set(env_here) | set(env_there))
               if env_here.get(k) != env_there.get(k)]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        if major * 10 + minor != manifest['capability']:
            differ.append(f'capability {major}{minor} here, {manifest["capability"]} there')
        if sms != manifest.get('multiprocessors'):
            differ.append(f'{sms} multiprocessors here, {manifest.get("multiprocessors")} '
                          'there (the weight gradient\'s launches differ)')
    entries = len(_entries(cache_dir))
    if differ:
        print(f'triton cache {cache_dir}: built by another Triton or for another GPU '
              f'({"; ".join(differ)}; Triton {manifest.get("triton")} there, '
              f'{here["triton"]} here); of its {entries} entries, those whose keys hold '
              'what differs will not be used: those kernels compile here as usual')
        return False
    print(f'triton cache {cache_dir}: {entries} entries, built by this Triton '
          f'({here["triton"]}) for sm_{manifest["capability"]}', flush=True)
    if replay_launches:
        launches, compiled = replay(cache_dir, manifest)
        print(f'triton cache {cache_dir}: the op\'s {launches} launches at '
              f'{manifest["dtypes"][0]} {manifest["shapes"][-1]}: {launches - compiled} '
              f'loaded from it, {compiled} compiled here')
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('--out', help='the Triton cache directory to fill')
    what.add_argument('--check', metavar='DIR',
                      help="say whether DIR's cache was built by this machine's Triton")
    parser.add_argument('--capability', type=int, default=90,
                        help='CUDA compute capability times 10 (default 90: H100/H200)')
    parser.add_argument('--multiprocessors', type=int, default=MULTIPROCESSORS,
                        help='the GPU\'s multiprocessor count (default 132: H100/H200 SXM)')
    parser.add_argument('--no-replay', action='store_true',
                        help='with --check: do not make the op\'s launches of one shape '
                        'to count cache hits')
    parser.add_argument('--dtypes', default='fp16,bf16,fp32')
    parser.add_argument('--shapes', default='c3,c4,c5')
    return parser


def main(argv=None):
    parser = build_parser()
    args, lists = parse_lists(parser, argv, {'dtypes': DTYPES, 'shapes': SHAPES})
    if args.check:
        return check(args.check, replay_launches=not args.no_replay)
    return precompile(args.out, args.capability, args.multiprocessors, lists['dtypes'],
                      lists['shapes'])


if __name__ == '__main__':
    main()
