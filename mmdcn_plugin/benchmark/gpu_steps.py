"""The GPU check's steps: what each runs, its time budget and what it needs first
(:mod:`.gpu_check` runs them)."""
import datetime
import importlib.util
import os
import os.path as osp
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

QUICKSTART_CONFIG = 'configs/quickstart/faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py'
PLAIN_CONFIG = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
DCN_CONFIG = 'configs/faster_rcnn/faster-rcnn_r50-dcnv2-c3-c5_fpn_1x_coco.py'
# mmdet's own mmcv configs: DCNv2 ('mdconv', the counterpart of ours) and DCNv1 ('dconv').
MMDET_DCN_CONFIGS = ('mmdet::dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py',
                     'mmdet::dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py')
DEFAULT_TESTS = ('tests/test_cuda.py', 'tests/test_capability_probe.py',
                 'tests/test_deform_conv_op.py', 'tests/test_mmcv_function.py',
                 'tests/test_layers.py', 'tests/test_rng_state_hook.py')
TRITON_TESTS = ('tests/test_triton_backend.py',)
OP_DTYPES = ('float32', 'float16', 'bfloat16')
DEFAULT_BUDGET_S = 390.0
# A step is not started with less than this left of the total budget.
MIN_STEP_S = 10.0
HEARTBEAT_S = 30.0
REPORT = 'report.md'
RESULTS = 'gpu_check.json'
STATUSES = ('passed', 'failed', 'timeout', 'skipped')


def _no_log(msg: str) -> None:
    pass


@dataclass
class Step:
    """One step: a command run in the checkout with a time budget.

    Attributes:
        name: short id (``logs/<name>.log``, ``--steps``).
        title: what the report calls it.
        argv: the command.
        budget_s: its time limit (cut further by what is left of the total).
        needs: steps that must have passed first, else this one is skipped.
        kind: how its results are read: ``'tests'``, ``'ops'``, ``'model'``, ``'train'``,
            ``'test'``, ``'environment'`` or ``''`` (the exit status alone).
        out_dir: where the step writes its own files (benchmarks: results.json).
    """
    name: str
    title: str
    argv: List[str]
    budget_s: float
    needs: Tuple[str, ...] = ()
    kind: str = ''
    out_dir: Optional[str] = None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def data_root_options(data_root: str) -> List[str]:
    """``--cfg-options`` that point the quick-start config at ``data_root``."""
    root = data_root.rstrip('/') + '/'
    return [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')] \
        + [f'{split}_evaluator.ann_file={root}annotations/val.json' for split in ('val', 'test')]


def xdist_workers() -> int:
    """pytest-xdist workers for the tests steps: a quarter of the cores, at most 4, where
    pytest-xdist is installed (the GPU machine's image has it), else 0 (one process).

    On a GPU most of a tests step is compiling the Triton kernels, once per
    specialisation (about 60 in ``tests``, 50 in ``tests-triton``, counted on the CPU),
    one after the other in one process; workers compile theirs side by side.  A step
    stopped at its limit still writes its junit file under xdist (checked on the CPU).
    """
    if importlib.util.find_spec('xdist') is None:
        return 0
    workers = min(4, (os.cpu_count() or 1) // 4)
    return workers if workers > 1 else 0


def _tests_step(name: str, title: str, python: str, tests: Sequence[str], out_dir: str,
                budget_s: float) -> Step:
    step_dir = osp.join(out_dir, name)
    if not tests:  # pytest without paths would collect the whole suite
        return Step(name, title, [python, '-c', 'import sys; sys.exit("no test files found")'],
                    budget_s, kind='tests', out_dir=step_dir)
    workers = xdist_workers()
    return Step(name, title, [python, '-m', 'pytest', *tests, '--device', 'cuda', '-q', '-rfEs',
                              '-p', 'no:cacheprovider', *(['-n', str(workers)] if workers else []),
                              '--junitxml', osp.join(step_dir, 'junit.xml')],
                budget_s, kind='tests', out_dir=step_dir)


def _ops_step(name: str, title: str, python: str, tool: str, out_dir: str, dtype: str,
              repeat: int, budget_s: float, extra: Sequence[str] = ()) -> Step:
    step_dir = osp.join(out_dir, name)
    return Step(name, title, [python, tool, 'ops', '--device', 'cuda', '--dtype', dtype,
                              '--shapes', 'r50-c3c5', *extra, '--repeat', str(repeat),
                              '--warmup', '3', '--out-dir', step_dir],
                budget_s, kind='ops', out_dir=step_dir)


def _model_step(precision: str, python: str, tool: str, root: str, out_dir: str,
                iters: int) -> Step:
    name = f'model-{precision}'
    step_dir = osp.join(out_dir, name)
    return Step(name, f'Faster R-CNN R50-FPN training steps, {precision}, batch 2 of 800x1216', [
        python, tool, 'model', osp.join(root, DCN_CONFIG), '--baseline', PLAIN_CONFIG,
        '--also', *MMDET_DCN_CONFIGS, '--device', 'cuda',
        *(['--amp'] if precision == 'amp' else []), '--synthetic', '800', '1216',
        '--batch-size', '2', '--iters', str(iters), '--warmup', '2',
        # No download on the machine: random initial weights.  Learning rate 0: the
        # same work in every step (the optimiser still runs), and random weights cannot
        # diverge into NaN boxes half-way through the timing.
        '--cfg-options', 'model.backbone.init_cfg=None', 'optim_wrapper.optimizer.lr=0.0',
        '--out-dir', step_dir],
        100, kind='model', out_dir=step_dir)


def existing_tests(root: str, tests: Sequence[str]) -> List[str]:
    """The test files of ``tests`` that exist under ``root`` (a file another change has
    not landed yet is left out rather than failing the whole step)."""
    return [t for t in tests if osp.isfile(osp.join(root, t))]


def default_steps(root: str, out_dir: str, work_dir: str, python: str = sys.executable,
                  tests: Sequence[str] = DEFAULT_TESTS, op_repeat: int = 10,
                  model_iters: int = 5, num_train: int = 240, num_val: int = 48) -> List[Step]:
    """The steps of the check, in the order they run (see the module docstring): the
    checks of correctness first, then the timings most wanted first, so that a check
    cut short by its budget loses the least.

    Args:
        root (str): the checkout (``tools/``, ``tests/``, ``configs/``).
        out_dir (str): where the report, the logs and the benchmarks' files go.
        work_dir (str): scratch space for the synthetic data and the checkpoints (kept
            out of ``out_dir``, which comes back from the machine).
        tests: test files of the ``tests`` step (those that exist); the Triton tests
            (:data:`TRITON_TESTS`) are a step of their own, as compiling kernels can
            take long and a time-out must not lose the other tests' results.
    """
    tool = lambda name: osp.join(root, 'tools', name)  # noqa: E731
    data = osp.join(work_dir, 'data')
    train_dir = osp.join(work_dir, 'train')
    quick = osp.join(root, QUICKSTART_CONFIG)
    bench = tool('benchmark.py')
    steps = [
        Step('environment', 'environment', [
            python, '-c', 'import sys; from mmdcn_plugin.benchmark.gpu_check import '
            'write_environment; write_environment(sys.argv[1], sys.argv[2])',
            osp.join(out_dir, 'environment.json'), root], 60, kind='environment',
            out_dir=out_dir),
        _tests_step('tests', 'CUDA tests', python, existing_tests(root, tests), out_dir, 120),
        Step('data', 'synthetic COCO data', [
            python, tool('make_synthetic_coco.py'), '--out-dir', data, '--num-train',
            str(num_train), '--num-val', str(num_val), '--no-progress'], 45),
        Step('train', 'quick-start DCNv2: train one epoch (tools/train.py)', [
            python, tool('train.py'), quick, '--work-dir', train_dir, '--cfg-options',
            'train_cfg.max_epochs=1', 'randomness.seed=0', *data_root_options(data)],
            120, needs=('data',), kind='train', out_dir=train_dir),
        Step('test', 'quick-start DCNv2: test the checkpoint (tools/test.py)', [
            python, tool('test.py'), quick, osp.join(train_dir, 'epoch_1.pth'), '--work-dir',
            osp.join(work_dir, 'test'), '--cfg-options', *data_root_options(data)],
            60, needs=('train',), kind='test'),
    ]
    triton = existing_tests(root, TRITON_TESTS)
    if triton:
        steps.append(_tests_step('tests-triton', 'CUDA tests of the Triton backend', python,
                                 triton, out_dir, 75))
    steps += [
        _ops_step('ops-float32', 'the op, float32', python, bench, out_dir, 'float32',
                  op_repeat, 75),
        Step('overhead', "the op wrapper's cost per call over mmcv's (tiny tensors)", [
            python, bench, 'overhead', '--device', 'cuda', '--backward', '--number', '500',
            '--out-dir', osp.join(out_dir, 'overhead')], 45, kind='overhead',
            out_dir=osp.join(out_dir, 'overhead')),
        _ops_step('ops-float16', 'the op, float16', python, bench, out_dir, 'float16',
                  op_repeat, 60),
        _model_step('fp32', python, bench, root, out_dir, model_iters),
        _ops_step('ops-bfloat16', 'the op, bfloat16', python, bench, out_dir, 'bfloat16',
                  op_repeat, 60),
        _ops_step('ops-float32-strict-conv', 'the op, float32, cuDNN conv without TF32',
                  python, bench, out_dir, 'float32', op_repeat, 45,
                  extra=('--strict-fp32-conv', '--candidates', 'mmcv', 'plugin:auto')),
        _model_step('amp', python, bench, root, out_dir, model_iters),
    ]
    return steps


def select_steps(steps: List[Step], only: Optional[Sequence[str]] = None,
                 skip: Sequence[str] = ()) -> List[Step]:
    """``steps`` restricted to the names in ``only`` (all when None), minus ``skip``.

    Raises:
        ValueError: a name that is not a step.
    """
    names = [s.name for s in steps]
    for argument, given in (('steps', only or ()), ('skip', skip)):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise ValueError(f'{argument}: expected step names among {names}, got {unknown}')
    return [s for s in steps if (only is None or s.name in only) and s.name not in skip]


# -- the environment --------------------------------------------------------------------
