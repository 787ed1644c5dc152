"""Export a detector's backbone, deformable convolutions included, to ONNX and check it.

Usage (from the repository root)::

    python tools/export_onnx.py CONFIG [--checkpoint CKPT] [--shape H W] [--out FILE]
                                [--opset N] [--atol A]

Builds the model of an MMDetection config (the plugin imported first, the config's
default scope set), loads ``CKPT`` when given, switches every
:class:`~mmdcn_plugin.layers.DeformableConv2d` to the pure-PyTorch backend (the only
one made of plain tensor ops an exporter can record), and exports ``model.backbone``
with PyTorch's TorchScript-based ONNX exporter on one random ``1 x 3 x H x W`` input
(default 128 x 128); the batch axis stays dynamic.  Then onnxruntime runs the file on
the same input and every output (one per feature map) is compared with PyTorch::

    output feat0 [1, 64, 32, 32]: max abs error 1.9e-06

The tool fails (exit code 1) when an output differs by more than ``--atol``
(default 1e-4).  The file goes to ``--out``, else next to the checkpoint
(``<checkpoint name>_backbone.onnx``), else to ``backbone.onnx`` in the current
directory.  A model without deformable layers is exported too, with a warning.

Needs ``onnx`` and ``onnxruntime`` (``pip install -e '.[dev]'``).
"""
import argparse
import importlib.util
import os.path as osp
import sys
import warnings

MIN_OPSET = 17


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Export a detector's backbone (deformable convolutions included) to "
        'ONNX and check it against PyTorch with onnxruntime.')
    parser.add_argument('config', help='MMDetection config file')
    parser.add_argument('--checkpoint', help='checkpoint to load (default: random weights)')
    parser.add_argument('--shape', type=int, nargs=2, default=[128, 128], metavar=('H', 'W'),
                        help='height and width of the sample input (default: 128 128)')
    parser.add_argument('--out', help='ONNX file to write (default: next to the checkpoint, '
                        'else backbone.onnx in the current directory)')
    parser.add_argument('--opset', type=int, default=MIN_OPSET,
                        help=f'ONNX opset version, >= {MIN_OPSET} (default: {MIN_OPSET})')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted absolute difference between onnxruntime and '
                        'PyTorch (default: 1e-4)')
    args = parser.parse_args(argv)
    if min(args.shape) < 1:
        parser.error(f'--shape must be two positive ints, got {args.shape}')
    if args.opset < MIN_OPSET:
        parser.error(f'--opset must be >= {MIN_OPSET} (the opsets the export is tested '
                     f'with), got {args.opset}')
    if not args.atol >= 0:
        parser.error(f'--atol must be >= 0, got {args.atol}')
    return args


def require_onnx() -> None:
    missing = [name for name in ('onnx', 'onnxruntime') if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"export_onnx.py: error: {' and '.join(missing)} not installed; "
                         "install the development extras: pip install -e '.[dev]'")


def default_out(checkpoint) -> str:
    if checkpoint:
        stem = osp.splitext(osp.basename(checkpoint))[0]
        return osp.join(osp.dirname(osp.abspath(checkpoint)), f'{stem}_backbone.onnx')
    return 'backbone.onnx'


def build_model(config: str, checkpoint=None):
    """The detector of ``config`` in eval mode on the CPU, ``checkpoint`` loaded."""
    import mmdcn_plugin  # noqa: F401  (registers the layers; safe checkpoint loading)
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmdet.registry import MODELS

    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config!r} does not exist')
    if checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist')
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    return model.eval()


def use_torch_backend(model) -> int:
    """Set every DeformableConv2d of ``model`` to ``backend='torch'``; return how many."""
    from mmdcn_plugin.layers import DeformableConv2d
    layers = [m for m in model.modules() if isinstance(m, DeformableConv2d)]
    for layer in layers:
        layer.backend = 'torch'
    return len(layers)


def as_outputs(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def export_backbone(backbone, sample, path: str, opset: int):
    """Export ``backbone`` on ``sample`` with a dynamic batch axis; return output names."""
    import torch
    with torch.no_grad():
        n_out = len(as_outputs(backbone(sample)))
    names = [f'feat{i}' for i in range(n_out)]
    axes = {name: {0: 'batch'} for name in ['input'] + names}
    with warnings.catch_warnings():
        # Shape checks turn traced sizes into Python bools: true for this input's
        # geometry, which the exported graph keeps (the batch axis excepted).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        # The TorchScript exporter is deprecated but exports this model in a fraction
        # of a second, without onnxscript; torch.export's exporter takes seconds.
        warnings.filterwarnings('ignore', 'You are using the legacy TorchScript',
                                DeprecationWarning)
        torch.onnx.export(backbone, (sample,), path, dynamo=False, opset_version=opset,
                          input_names=['input'], output_names=names, dynamic_axes=axes)
    return names


def compare_with_onnxruntime(path: str, sample, expected, names, atol: float) -> bool:
    """Run ``path`` on ``sample``; print the max abs error per output; True if all pass."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(path)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(names, {'input': sample.numpy()})
    ok = True
    for name, ref, out in zip(names, expected, got):
        ref = ref.numpy()
        if ref.shape != out.shape:
            print(f'output {name}: shape {list(out.shape)} from onnxruntime, '
                  f'{list(ref.shape)} from PyTorch')
            ok = False
            continue
        err = float(np.abs(out.astype(np.float64) - ref).max()) if ref.size else 0.0
        flag = '' if err <= atol else f'  > atol {atol:g}'
        print(f'output {name} {list(ref.shape)}: max abs error {err:.3g}{flag}')
        ok = ok and err <= atol
    return ok


def main(argv=None) -> int:
    args = parse_args(argv)
    require_onnx()
    import torch

    model = build_model(args.config, args.checkpoint)
    if not hasattr(model, 'backbone'):
        raise ValueError(f'the model of {args.config} ({type(model).__name__}) has no '
                         'backbone to export')
    backbone = model.backbone
    h, w = args.shape
    sample = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    # The reference runs with the layers' own backends, as the model was evaluated.
    with torch.no_grad():
        expected = as_outputs(backbone(sample))
    count = use_torch_backend(model)
    if count:
        print(f"{count} DeformableConv2d layer(s) set to backend='torch' for the export")
    else:
        print(f'warning: no DeformableConv2d found in {args.config}; exporting the '
              'backbone anyway', file=sys.stderr)
    out = args.out or default_out(args.checkpoint)
    names = export_backbone(backbone, sample, out, args.opset)
    print(f'exported {type(backbone).__name__} ({h} x {w} input, opset {args.opset}, '
          f'dynamic batch) to {out}')
    if not compare_with_onnxruntime(out, sample, expected, names, args.atol):
        print(f'export_onnx.py: error: onnxruntime differs from PyTorch by more than '
              f'--atol {args.atol:g} (see above); the file was kept at {out}',
              file=sys.stderr)
        return 1
    print(f'onnxruntime matches PyTorch within {args.atol:g} on every output')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'export_onnx.py: error: {e}')
