"""Shared test helpers: random deformable-convolution problems, small training configs."""
import os.path as osp

import pytest
import torch

from mmdcn_plugin.ops.checks import conv_out_size, to_pair


def make_problem(n=2, c_in=4, h=6, w=7, c_out=6, kernel=(3, 2), stride=(2, 1), padding=(1, 0),
                 dilation=1, groups=2, deform_groups=2, modulated=True, bias=True,
                 dtype=torch.float64, offset_scale=2.0, seed=0, device='cpu'):
    """Tensors for one call; offsets are large enough to cross every border.

    The numbers are drawn on the CPU and then moved, so a seed gives the same problem
    on every ``device``.  Returns a dict usable as ``deform_conv2d(**problem)``.
    """
    gen = torch.Generator().manual_seed(seed)
    kh, kw = to_pair(kernel, 'kernel', 1)
    s, p, d = to_pair(stride, 's', 1), to_pair(padding, 'p', 0), to_pair(dilation, 'd', 1)
    h_out = conv_out_size(h, kh, s[0], p[0], d[0])
    w_out = conv_out_size(w, kw, s[1], p[1], d[1])
    k = kh * kw

    def leaf(t):
        return t.to(device).requires_grad_()

    def rand(*shape, scale=1.0):
        return leaf(torch.randn(*shape, generator=gen, dtype=dtype) * scale)

    problem = dict(
        input=rand(n, c_in, h, w),
        offset=rand(n, 2 * deform_groups * k, h_out, w_out, scale=offset_scale),
        weight=rand(c_out, c_in // groups, kh, kw),
        bias=rand(c_out) if bias else None,
        stride=stride, padding=padding, dilation=dilation,
        mask=(leaf(torch.rand(n, deform_groups * k, h_out, w_out, generator=gen, dtype=dtype))
              if modulated else None),
    )
    return problem


def on_device(problem, device):
    """A copy of ``problem`` with its tensors on ``device``, as leaves that keep their
    ``requires_grad`` (``.to()`` alone would make non-leaf views of the originals)."""
    return {k: (v.detach().to(device).requires_grad_(v.requires_grad)
                if isinstance(v, torch.Tensor) else v)
            for k, v in problem.items()}


def tensors_of(problem):
    """The differentiable tensors of a problem, in a fixed order."""
    names = [k for k in ('input', 'offset', 'weight', 'bias', 'mask')
             if problem.get(k) is not None]
    return names, [problem[k] for k in names]


def output_and_grads(fn, problem, seed=1):
    """Run ``fn(**problem)``, back-propagate a fixed random gradient, return all.

    The gradient is drawn on the CPU and moved to the output's device, so the same
    seed gives the same numbers on every device.
    """
    names, tensors = tensors_of(problem)
    out = fn(**problem)
    gen = torch.Generator().manual_seed(seed)
    grad_out = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)
    grads = torch.autograd.grad(out, tensors, grad_out, allow_unused=True)
    return out, dict(zip(names, grads))


def backends_on(device):
    """Available backends (not 'auto') whose kernels take tensors on ``device``."""
    from mmdcn_plugin.ops import available_backends
    from mmdcn_plugin.ops.backends import BACKENDS
    return [name for name in available_backends()
            if name != 'auto' and _runs_on(BACKENDS[name], device)]


def _runs_on(backend, device):
    devices = backend.devices()
    return devices is None or torch.device(device).type in devices


def skip_unless_runs_on(backend, device):
    """Skip the calling test, saying why, when ``backend`` cannot take ``device`` tensors
    here ('cpp' is CPU-only; 'mmcv' takes CUDA tensors only when built with CUDA)."""
    from mmdcn_plugin.ops.backends import BACKENDS
    entry = BACKENDS[backend]
    if not _runs_on(entry, device):
        pytest.skip(f'backend {backend!r} does not run on {torch.device(device).type} '
                    f'tensors here (it runs on {list(entry.devices())}: {entry.description})')


# Backends 'auto' prefers to mmcv's kernels on CUDA (Triton, when it imports).
PREFERRED_OVER_MMCV = ('triton',)


def set_aside_backends_preferred_to_mmcv(monkeypatch):
    """Make 'auto' on CUDA choose as if nothing it prefers to mmcv were installed."""
    from mmdcn_plugin.ops.backends import BACKENDS
    for name in set(PREFERRED_OVER_MMCV) & set(BACKENDS):
        monkeypatch.setitem(BACKENDS, name, BACKENDS[name]._replace(available=lambda: False))


class FakeCudaTensor(torch.Tensor):
    """A CPU tensor that says it is on CUDA: all the op's dispatch looks at (for
    checking on a machine without a GPU which backend a CUDA tensor would get)."""

    @property
    def device(self):
        return torch.device('cuda', 0)


def on_fake_cuda(problem):
    """``problem`` with its tensors as :class:`FakeCudaTensor` (no gradients)."""
    return {k: (v.detach().as_subclass(FakeCudaTensor) if isinstance(v, torch.Tensor) else v)
            for k, v in problem.items()}


ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK_DCNV2 = osp.join(ROOT, 'configs', 'quickstart',
                       'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Import into a test module to run it on one intra-op thread.

    Tiny models on a 2-core machine shared with other jobs: thread overhead dominated
    (measured 10-30x slower steps with 2 threads than with 1).
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def short_training_cfg(data_root, work_dir, hooks):
    """The quick-start DCNv2 config: 1 epoch of 4 images, no validation, no checkpoint."""
    from mmengine.config import Config
    cfg = Config.fromfile(QUICK_DCNV2)
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=100)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = None
    cfg.custom_hooks = hooks
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    # MMEngine keeps one logger per experiment name (a timestamp in seconds) and one
    # visualizer per name (mmdet's configs say 'visualizer'): a second run in the
    # same process would write into the first one's files.
    cfg.experiment_name = osp.basename(work_dir)
    cfg.visualizer.name = osp.basename(work_dir)
    return cfg


def load_tool(name):
    """``tools/NAME.py`` as a module, run in this process (a tool is a script, not a
    package module, so it is loaded from its file rather than through ``sys.path``)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'{name}_tool',
                                                  osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
