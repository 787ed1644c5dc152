"""The files a benchmark writes: results.json, results.csv and a bar chart."""
import csv
import json
import os
import os.path as osp
from typing import List, Optional


def write_partial(rows: List[dict], out_dir: str, kind: str, machine: str,
                  extra: Optional[dict] = None) -> str:
    """``results.json`` of the rows so far, marked ``partial`` (no CSV, no chart): what a
    benchmark stopped part-way leaves; :func:`write_outputs` replaces it at the end."""
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, 'results.json')
    with open(path + '.tmp', 'w') as f:
        json.dump(dict(kind=kind, machine=machine, **(extra or {}), partial=True, rows=rows),
                  f, indent=2)
    os.replace(path + '.tmp', path)
    return path


def write_outputs(rows: List[dict], out_dir: str, kind: str, machine: str,
                  extra: Optional[dict] = None) -> List[str]:
    """Write ``results.json`` (with ``kind`` and ``machine``), ``results.csv`` and
    ``results.png`` (not without matplotlib) into ``out_dir``; return their paths.

    Args:
        kind (str): ``'ops'`` (rows of :func:`~.ops.run_ops`), ``'model'`` (rows of
            :func:`~.model.run_model`) or ``'overhead'`` (rows of
            :func:`~.overhead.run_overhead`); chooses the chart.
        extra (dict): more keys of ``results.json`` (the op benchmark's ``ceilings``).
    """
    if kind not in ('ops', 'model', 'overhead'):
        raise ValueError(f"kind: expected 'ops', 'model' or 'overhead', got {kind!r}")
    os.makedirs(out_dir, exist_ok=True)
    paths = [osp.join(out_dir, f'results.{ext}') for ext in ('json', 'csv', 'png')]
    with open(paths[0], 'w') as f:
        json.dump(dict(kind=kind, machine=machine, **(extra or {}), rows=rows), f, indent=2)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(paths[1], 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    try:
        # A Figure without pyplot: no global backend switch, nothing left open.
        from matplotlib.figure import Figure
    except ImportError:  # a bare machine (a lent GPU): the numbers matter, not the chart
        return paths[:2]
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    if kind == 'ops':
        rows = [r for r in rows if 'vs_conv' in r]  # not the candidates that failed
        labels = [f"{r['shape']} {r['mode']}\n{r['candidate']}" for r in rows]
        values = [r['vs_conv'] for r in rows]
        ax.bar(range(len(rows)), values,
               color=['tab:gray' if r['candidate'] == 'conv' else 'tab:blue' for r in rows])
        ax.set_ylabel('time / plain conv')
        ax.set_yscale('log')
    elif kind == 'model':
        labels = [r['variant'] for r in rows]
        values = [r['train_iter_s'] for r in rows]
        ax.bar(range(len(rows)), values)
        ax.set_ylabel('train iteration (s)')
    else:
        labels = [r['row'] for r in rows]
        ax.bar(range(len(rows)), [r['us_per_call'] for r in rows])
        ax.set_ylabel('microseconds per call')
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_title(machine, fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    return paths


def machine_for(device: str, threads: Optional[int] = None) -> str:
    """:func:`mmdcn_plugin.utils.machine_line`, plus on CUDA the GPU, torch's CUDA and
    cuDNN versions and both TF32 switches (which one each side of a ratio used)."""
    import torch
    from ..utils import machine_line
    line = machine_line(threads=threads)
    if device.startswith('cuda') and torch.cuda.is_available():
        from .ops import tf32_flags
        flags = tf32_flags()
        line += (f'; GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN '
                 f'{torch.backends.cudnn.version()}); TF32 cudnn={flags["cudnn"]} '
                 f'matmul={flags["matmul"]}')
    return line
