"""The one private attribute of mmdet's ``CocoMetric`` that ``SafeCocoMetric`` relies on.

``CocoMetric`` reads its ground truth from ``ann_file`` into a pycocotools ``COCO``
object kept in ``self._coco_api`` (or builds one from the dataset when there is no
file), and ``compute_metrics`` scores against that object.  It has no public way to
be given ground truth that was checked and cleaned first, which is what
``SafeCocoMetric`` does.  Each access is wrapped here, with the version it was
checked against, so that an mmdet upgrade that renames it breaks this file and
``tests/test_evaluation_private_api.py`` loudly, not the scores silently.

Checked against mmdet 3.3.0.
"""
CHECKED_WITH = 'mmdet 3.3.0'


def ground_truth(metric):
    """The ``COCO`` object ``metric`` (a ``CocoMetric``) scores against; ``None`` until it
    has one.

    Private attribute ``_coco_api`` of mmdet's ``CocoMetric``; checked with mmdet 3.3.0.
    """
    return metric._coco_api


def set_ground_truth(metric, coco) -> None:
    """Make ``metric`` (a ``CocoMetric``) score against ``coco`` (a pycocotools ``COCO``).

    ``CocoMetric.__init__`` sets the private ``_coco_api`` from ``ann_file``, and
    ``compute_metrics`` reads it (its ``cat_ids`` and ``img_ids`` too, when they are
    not set); checked with mmdet 3.3.0.
    """
    metric._coco_api = coco
