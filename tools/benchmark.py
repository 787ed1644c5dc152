"""Benchmarks: the deformable-convolution op against a plain conv, and whole detectors.

    python tools/benchmark.py ops [--device cpu|cuda] [--dtype float32] --out-dir DIR
    python tools/benchmark.py model CONFIG [--baseline CONFIG] [--iters N] --out-dir DIR

``ops`` times every backend of the plugin, mmcv's raw kernels and a plain
``F.conv2d`` of the same shape (the floor), forward and forward+backward, on the
DCN shapes of ResNet-50's c3-c5 for a 400x667 image at batch 2 (DCNv2, 3x3).
Candidates are interleaved in every repetition (so drift hits all of them alike)
after a warm-up, and the median is reported.  ``--memory`` also measures the peak
memory of one forward+backward of each candidate in a fresh process.

``model`` times training iterations (``train_step``) and inference (``test_step``)
of a detector config and of its baseline: the same config with the backbone's
deformable layers removed, unless ``--baseline`` names another config.

Both print a Markdown table and write ``results.csv``, ``results.json`` and a PNG
bar chart into ``--out-dir``.
"""
import argparse
import csv
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from mmengine.config import DictAction

from mmdcn_plugin.apis import build_model_from_config
from mmdcn_plugin.utils import machine_line as _machine_line

# ResNet-50 c3-c5 DCN inputs for a 400x667 image, batch 2.
OP_SHAPES = {'c3': (2, 128, 50, 84), 'c4': (2, 256, 25, 42), 'c5': (2, 512, 13, 21)}
DTYPES = {'float32': torch.float32, 'float64': torch.float64, 'bfloat16': torch.bfloat16}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def machine_line():
    return _machine_line(threads=torch.get_num_threads())


# ----------------------------------------------------------------------------- ops
def make_op_inputs(shape, device, dtype, seed=0):
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(seed)

    def rand(*s, scale=1.0):
        return (torch.randn(*s, generator=gen) * scale).to(device=device, dtype=dtype)

    x = rand(n, c, h, w).requires_grad_()
    weight = rand(c, c, 3, 3, scale=0.05).requires_grad_()
    offset = rand(n, 18, h, w, scale=2.0).requires_grad_()
    mask = torch.rand(n, 9, h, w, generator=gen).to(device=device, dtype=dtype)
    return x, weight, offset, mask.requires_grad_()


def op_candidates():
    """name -> fn(x, weight, offset, mask) for every candidate available here."""
    from mmdcn_plugin.ops import available_backends, deform_conv2d

    cands = {'conv': lambda x, w, o, m: F.conv2d(x, w, None, 1, 1)}
    for name in available_backends():
        if name != 'auto':
            cands[f'plugin:{name}'] = (
                lambda x, w, o, m, b=name: deform_conv2d(x, o, w, None, 1, 1, 1, m, backend=b))
    try:
        from mmdcn_plugin.ops.backends.mmcv_impl import mmcv_ops_available
        if mmcv_ops_available():
            from mmcv.ops import modulated_deform_conv2d
            cands['mmcv'] = lambda x, w, o, m: modulated_deform_conv2d(
                x, o, m, w, None, 1, 1, 1, 1, 1)
    except ImportError:
        pass
    return cands


def _sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def time_once(fn, inputs, mode, device):
    for t in inputs:
        t.grad = None
    _sync(device)
    start = time.perf_counter()
    if mode == 'fwd':
        with torch.no_grad():
            fn(*inputs)
    else:
        fn(*inputs).sum().backward()
    _sync(device)
    return time.perf_counter() - start


def _rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _peak_rss_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory_child(args):
    """One forward+backward in this (fresh) process; print the peak RSS it added.

    A first call warms up; then the kernel's peak-RSS counter is reset (writing 5
    to /proc/self/clear_refs) so the peak covers the measured call only.
    """
    inputs = make_op_inputs(OP_SHAPES[args.shape], 'cpu', DTYPES[args.dtype])
    fn = op_candidates()[args.candidate]
    fn(*inputs).sum().backward()
    for t in inputs:
        t.grad = None
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    rss_before = _rss_bytes()
    fn(*inputs).sum().backward()
    print(json.dumps({'peak_mb': max(_peak_rss_bytes() - rss_before, 0) / 2**20}))


def run_ops(args):
    device, dtype = args.device, DTYPES[args.dtype]
    if device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    if args.threads:
        torch.set_num_threads(args.threads)
    cands = op_candidates()
    if args.candidates:
        unknown = sorted(set(args.candidates) - set(cands))
        if unknown:
            raise SystemExit(f'unknown --candidates {unknown}; available: {sorted(cands)}')
        cands = {k: v for k, v in cands.items() if k in args.candidates or k == 'conv'}
    rows = []
    for shape_name in args.shapes:
        shape = OP_SHAPES[shape_name]
        inputs = make_op_inputs(shape, device, dtype)
        for mode in ('fwd', 'fwd+bwd'):
            times = {name: [] for name in cands}
            for name, fn in cands.items():  # warm-up
                for _ in range(args.warmup):
                    time_once(fn, inputs, mode, device)
            for rep in range(args.repeat):
                log(f'[ops] {shape_name} {mode}: repetition {rep + 1}/{args.repeat}')
                for name, fn in cands.items():
                    times[name].append(time_once(fn, inputs, mode, device))
            conv = statistics.median(times['conv'])
            for name, ts in times.items():
                med = statistics.median(ts)
                rows.append(dict(shape=shape_name, nchw='x'.join(map(str, shape)), mode=mode,
                                 candidate=name, median_ms=round(med * 1e3, 2),
                                 vs_conv=round(med / conv, 2)))
    if args.memory and device == 'cpu':
        for shape_name in args.shapes:
            for name in cands:
                log(f'[ops] peak memory {shape_name} {name}')
                out = subprocess.run(
                    [sys.executable, __file__, '_memchild', '--shape', shape_name,
                     '--candidate', name, '--dtype', args.dtype],
                    capture_output=True, text=True, check=True)
                peak = json.loads(out.stdout.strip().splitlines()[-1])['peak_mb']
                for row in rows:
                    if row['shape'] == shape_name and row['candidate'] == name:
                        row['peak_mb'] = round(peak, 1)
    return rows


def ops_table(rows):
    mem = any('peak_mb' in r for r in rows)
    head = '| shape (N,C,H,W) | candidate | fwd ms | fwd x conv | fwd+bwd ms | fwd+bwd x conv |'
    head += ' peak MB (fwd+bwd) |' if mem else ''
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    keyed = {(r['shape'], r['candidate'], r['mode']): r for r in rows}
    for shape in dict.fromkeys(r['shape'] for r in rows):
        for cand in dict.fromkeys(r['candidate'] for r in rows):
            f, b = keyed[(shape, cand, 'fwd')], keyed[(shape, cand, 'fwd+bwd')]
            line = (f"| {f['nchw'].replace('x', ',')} | {cand} | {f['median_ms']} | "
                    f"{f['vs_conv']}x | {b['median_ms']} | {b['vs_conv']}x |")
            if mem:
                line += f" {b.get('peak_mb', '')} |"
            lines.append(line)
    return '\n'.join(lines)


def geomean(values):
    values = list(values)
    prod = 1.0
    for v in values:
        prod *= v
    return prod ** (1.0 / len(values))


def ops_summary(rows):
    """Geometric-mean speed-ups of each plugin backend over mmcv, per mode."""
    out = []
    cands = list(dict.fromkeys(r['candidate'] for r in rows))
    if 'mmcv' not in cands:
        return ''
    for mode in ('fwd', 'fwd+bwd'):
        for cand in cands:
            if not cand.startswith('plugin:'):
                continue
            ratios = []
            for shape in dict.fromkeys(r['shape'] for r in rows):
                get = {r['candidate']: r['median_ms'] for r in rows
                       if r['shape'] == shape and r['mode'] == mode}
                ratios.append(get['mmcv'] / get[cand])
            out.append(f'{cand} {mode}: {geomean(ratios):.2f}x faster than mmcv '
                       '(geometric mean over shapes)')
    return '\n'.join(out)


# --------------------------------------------------------------------------- model
def _build(config, strip=False, cfg_options=None):
    """(config, model) with the weights the Runner would give it before training."""
    try:
        model = build_model_from_config(config, cfg_options=cfg_options, strip_dcn=strip,
                                        init_weights=True, seed=0)
    except ValueError as e:
        raise SystemExit(f'{e} (--baseline CONFIG)')
    return model.cfg, model


def _batch(cfg, batch_size):
    from mmengine.runner import Runner
    loader_cfg = dict(cfg.train_dataloader)
    loader_cfg.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    return next(iter(loader))


def run_model(args):
    from mmengine.optim import build_optim_wrapper
    cfg, model = _build(args.config, cfg_options=args.cfg_options)
    if args.baseline:
        base_cfg, base_model = _build(args.baseline, cfg_options=args.cfg_options)
    else:
        base_cfg, base_model = _build(args.config, strip=True, cfg_options=args.cfg_options)
    batch = _batch(cfg, args.batch_size)
    variants = {'baseline': (base_cfg, base_model), 'config': (cfg, model)}
    optims = {k: build_optim_wrapper(m, c.optim_wrapper) for k, (c, m) in variants.items()}
    train = {k: [] for k in variants}
    infer = {k: [] for k in variants}
    for it in range(args.warmup + args.iters):
        log(f'[model] iteration {it + 1}/{args.warmup + args.iters}'
            + (' (warm-up)' if it < args.warmup else ''))
        for name, (_, m) in variants.items():
            m.train()
            start = time.perf_counter()
            m.train_step(batch, optims[name])
            t_train = time.perf_counter() - start
            m.eval()
            start = time.perf_counter()
            with torch.no_grad():
                m.test_step(batch)
            t_test = time.perf_counter() - start
            if it >= args.warmup:
                train[name].append(t_train)
                infer[name].append(t_test)
    rows = []
    for name in variants:
        tr, te = statistics.median(train[name]), statistics.median(infer[name])
        rows.append(dict(variant=name, train_iter_s=round(tr, 4),
                         infer_images_per_s=round(args.batch_size / te, 2)))
    base = rows[0]['train_iter_s']
    for r in rows:
        r['train_vs_baseline'] = round(r['train_iter_s'] / base, 3)
    return rows


def model_table(rows):
    lines = ['| variant | train iteration (s) | x baseline | inference images/s |',
             '|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['variant']} | {r['train_iter_s']} | {r['train_vs_baseline']}x | "
                     f"{r['infer_images_per_s']} |")
    return '\n'.join(lines)


# ---------------------------------------------------------------------------- output
def write_outputs(rows, out_dir, kind):
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(dict(kind=kind, machine=machine_line(), rows=rows), f, indent=2)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(osp.join(out_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if kind == 'ops':
        labels = [f"{r['shape']} {r['mode']}\n{r['candidate']}" for r in rows]
        values = [r['vs_conv'] for r in rows]
        ax.bar(range(len(rows)), values,
               color=['tab:gray' if r['candidate'] == 'conv' else 'tab:blue' for r in rows])
        ax.set_ylabel('time / plain conv')
        ax.set_yscale('log')
    else:
        labels = [r['variant'] for r in rows]
        values = [r['train_iter_s'] for r in rows]
        ax.bar(range(len(rows)), values)
        ax.set_ylabel('train iteration (s)')
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_title(machine_line(), fontsize=8)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, 'results.png'), dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='cmd', required=True)
    ops = sub.add_parser('ops', help='time the op against a plain conv')
    ops.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    ops.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    ops.add_argument('--shapes', nargs='+', choices=sorted(OP_SHAPES), default=['c3', 'c4', 'c5'])
    ops.add_argument('--candidates', nargs='+', help='subset to time (conv is always timed)')
    ops.add_argument('--repeat', type=int, default=7)
    ops.add_argument('--warmup', type=int, default=2)
    ops.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    ops.add_argument('--memory', action='store_true', help='also measure peak memory (CPU)')
    ops.add_argument('--out-dir', required=True)
    model = sub.add_parser('model', help='time a detector against its baseline')
    model.add_argument('config')
    model.add_argument('--baseline', help='baseline config (default: CONFIG without DCN)')
    model.add_argument('--batch-size', type=int, default=2)
    model.add_argument('--iters', type=int, default=5)
    model.add_argument('--warmup', type=int, default=1)
    model.add_argument('--out-dir', required=True)
    model.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                       help='key=value overrides for both configs (as in tools/train.py)')
    child = sub.add_parser('_memchild')
    child.add_argument('--shape', choices=sorted(OP_SHAPES))
    child.add_argument('--candidate')
    child.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    args = parser.parse_args(argv)
    for name in ('repeat', 'iters', 'batch_size'):
        if getattr(args, name, 1) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.cmd == '_memchild':
        return peak_memory_child(args)
    log(f'machine: {machine_line()}')
    if args.cmd == 'ops':
        rows = run_ops(args)
        table = ops_table(rows)
        summary = ops_summary(rows)
    else:
        rows = run_model(args)
        table = model_table(rows)
        summary = ''
    write_outputs(rows, args.out_dir, args.cmd)
    print(f'<!-- {" ".join(sys.argv)} -->')
    print(f'machine: {machine_line()}\n')
    print(table)
    if summary:
        print('\n' + summary)
    log(f'wrote results.csv, results.json, results.png to {args.out_dir}')


if __name__ == '__main__':
    main()
