"""After an export: what the file holds, how far onnxruntime is from PyTorch, how fast each is."""
import os
from collections import Counter
from typing import List, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from ..utils.timing import median_seconds, torch_threads
from .runtime import inference_session, require


def op_counts(path: str) -> Counter:
    """How many nodes of each ``op_type`` the ONNX file holds (subgraphs and functions too)."""
    require('onnx')
    import onnx
    model = onnx.load(path, load_external_data=False)
    counts: Counter = Counter()

    def visit(graph):
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField('g') else []) + list(attr.graphs):
                    visit(sub)

    visit(model.graph)
    for function in model.functions:
        for node in function.node:
            counts[node.op_type] += 1
    return counts


def file_size(path: str) -> int:
    """Bytes of the ONNX file and its external-data file, if it has one."""
    size = os.path.getsize(path)
    if os.path.exists(path + '.data'):
        size += os.path.getsize(path + '.data')
    return size


class OutputDiff(NamedTuple):
    name: str
    shape: List[int]
    max_abs: float       # inf when the shapes differ; nan when an output is NaN on one side only


def compare_outputs(names: Sequence[str], expected: Sequence[Tensor],
                    got: Sequence[np.ndarray]) -> List[OutputDiff]:
    """The largest absolute difference of every output (NaN on both sides counts as equal)."""
    if len(expected) != len(got):
        raise ValueError(f'expected {len(expected)} outputs from onnxruntime, got {len(got)}')
    diffs = []
    for name, ref, out in zip(names, expected, got):
        ref = ref.detach().cpu().numpy().astype(np.float64)
        out = np.asarray(out, dtype=np.float64)
        if ref.shape != out.shape:
            diffs.append(OutputDiff(name, list(out.shape), float('inf')))
            continue
        both_nan = np.isnan(ref) & np.isnan(out)
        with np.errstate(invalid='ignore'):
            err = np.where(both_nan, 0.0, np.abs(out - ref))
        diffs.append(OutputDiff(name, list(ref.shape), float(err.max()) if err.size else 0.0))
    return diffs


class Check(NamedTuple):
    deform_conv_nodes: int
    file_bytes: int
    diffs: List[OutputDiff]
    torch_seconds: float
    ort_seconds: float


def check_export(path: str, module: torch.nn.Module, sample: Tensor, input_name: str,
                 output_names: Sequence[str], threads: int, repeat: int = 3) -> Check:
    """Count ``DeformConv`` nodes, run onnxruntime and PyTorch on ``sample``, time both.

    Args:
        path (str): the exported file.
        module (nn.Module): what was exported, with the backends it runs with in PyTorch.
        sample (Tensor[N, ...]): the input both run on.
        threads (int): onnxruntime's intra-op threads, and PyTorch's for the timing.
        repeat (int): timed runs of each (after one warm-up); the median is reported.
    """
    import onnx
    onnx.checker.check_model(path)
    session = inference_session(path, threads)
    feed = {input_name: sample.cpu().numpy()}
    got = session.run(list(output_names), feed)
    with torch_threads(threads), torch.no_grad():
        expected = module(sample)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        torch_s = median_seconds(lambda: module(sample), repeat)
    ort_s = median_seconds(lambda: session.run(list(output_names), feed), repeat)
    return Check(op_counts(path)['DeformConv'], file_size(path),
                 compare_outputs(output_names, expected, got), torch_s, ort_s)

