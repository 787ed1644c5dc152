"""Data shared by the robustness tests (``test_robustness_*.py``): small generated
COCO sets and readers of their files."""
import json

import pytest


def generate(root, num_val):
    """A val split of ``num_val`` 128 px images with strongly deformed shapes."""
    from mmdcn_plugin.datasets import generate_synthetic_coco
    out = generate_synthetic_coco(root, num_train=1, num_val=num_val, seed=5,
                                  deformation='strong', image_size=128, progress=False)
    return dict(root=root, ann_file=out['val']['ann_file'], img_dir=out['val']['img_dir'])


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """6 val images of 128 px with strongly deformed (rotated, sheared) shapes."""
    return generate(tmp_path_factory.mktemp('shapes'), 6)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """2 val images: what the detector runs on (a test run costs seconds per image here)."""
    return generate(tmp_path_factory.mktemp('robustness'), 2)


def load(ann_file):
    """The COCO dict of ``ann_file`` and its annotations by image id."""
    with open(ann_file) as f:
        coco = json.load(f)
    by_image = {}
    for ann in coco['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    return coco, by_image


def read(path):
    import cv2
    return cv2.imread(str(path), cv2.IMREAD_COLOR)
