"""The private attribute of mmdet's CocoMetric that SafeCocoMetric relies on
(``mmdcn_plugin/evaluation/private_api.py``): an mmdet upgrade that moves it fails here."""
import json

import numpy as np

from mmdcn_plugin.evaluation.private_api import ground_truth, set_ground_truth


def _coco_file(path, box):
    data = dict(images=[dict(id=1, width=20, height=20, file_name='a.png')],
                annotations=[dict(id=1, image_id=1, category_id=1, bbox=box,
                                  area=box[2] * box[3], iscrowd=0)],
                categories=[dict(id=1, name='thing')])
    path.write_text(json.dumps(data))
    return str(path)


def test_coco_metric_keeps_its_ground_truth_where_the_seam_reads_it(tmp_path):
    from mmdet.evaluation import CocoMetric
    from mmdet.datasets.api_wrappers import COCO
    coco = ground_truth(CocoMetric(ann_file=_coco_file(tmp_path / 'gt.json', [1, 1, 4, 4])))
    assert isinstance(coco, COCO) and coco.get_img_ids() == [1]
    assert ground_truth(CocoMetric()) is None


def test_compute_metrics_scores_against_the_ground_truth_that_was_set(tmp_path):
    """A box that only the set ground truth holds scores 1; against the file's, 0."""
    from mmdet.evaluation import CocoMetric
    from mmdet.datasets.api_wrappers import COCO
    metric = CocoMetric(ann_file=_coco_file(tmp_path / 'file.json', [1, 1, 4, 4]),
                        outfile_prefix=str(tmp_path / 'out'))
    metric.dataset_meta = dict(classes=('thing',))
    other = COCO(_coco_file(tmp_path / 'set.json', [10, 10, 6, 6]))
    set_ground_truth(metric, other)
    assert ground_truth(metric) is other
    pred = dict(img_id=1, bboxes=np.array([[10.0, 10.0, 16.0, 16.0]]),
                scores=np.array([0.9]), labels=np.array([0]))
    metrics = metric.compute_metrics([(dict(img_id=1), pred)])
    assert metrics['bbox_mAP'] == 1.0
