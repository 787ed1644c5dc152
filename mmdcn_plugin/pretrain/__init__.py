"""A backbone pretrained by the package on its own data (the ImageNet stage of DCN papers).

``tools/pretrain_backbone.py`` runs :func:`pretrain_backbone`; ``weights/`` holds the
committed result that the quick-start configs load.
"""
from .crops import object_crops
from .pretrain import PRETRAIN_DEFAULTS, pretrain_backbone, pretrained_digest, sha256_of

__all__ = ['object_crops', 'pretrain_backbone', 'pretrained_digest', 'PRETRAIN_DEFAULTS', 'sha256_of']
