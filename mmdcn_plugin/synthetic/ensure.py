"""A generated dataset made once and found again: what the study and ``make demo`` share.

The folder holds ``dataset_spec.json`` with the generator's arguments; a later call
with the same arguments finds it and generates nothing, and one with other arguments
generates the dataset again in place.
"""
import json
import os
import os.path as osp
from typing import Callable

from .coco import generate_synthetic_coco

SPEC_FILE = 'dataset_spec.json'


def ensure_synthetic_coco(root: str, num_train: int, num_val: int, image_size: int = 128,
                          deformation: str = 'moderate', seed: int = 0,
                          log: Callable[[str], None] = print) -> str:
    """Generate the embedded dataset into ``root`` unless it is already there with these
    arguments (see :func:`~.coco.generate_synthetic_coco`); return ``root``.

    The spec file is written last, so an interrupted generation is redone.
    """
    spec = dict(deformation=deformation, num_train=num_train, num_val=num_val, seed=seed,
                image_size=image_size)
    spec_file = osp.join(root, SPEC_FILE)
    if osp.isfile(spec_file):
        with open(spec_file) as f:
            found = json.load(f)
        if found == spec:
            log(f'dataset found at {root} ({num_train} train / {num_val} val images of '
                f'{image_size} px, deformation {deformation!r})')
            return root
        log(f'{root} holds another dataset ({found}); generating {spec} in its place')
    else:
        log(f'generating the {deformation!r} dataset ({num_train} train + {num_val} val '
            f'images of {image_size} px, seed {seed}) into {root}')
    generate_synthetic_coco(root, num_train=num_train, num_val=num_val, seed=seed,
                            deformation=deformation, image_size=image_size, progress=False)
    os.makedirs(root, exist_ok=True)
    with open(spec_file + '.tmp', 'w') as f:
        json.dump(spec, f)
    os.replace(spec_file + '.tmp', spec_file)
    return root
