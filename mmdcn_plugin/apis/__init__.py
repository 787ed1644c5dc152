"""Entry points shared by the command-line tools: build a detector from a config.

The tools in ``tools/`` parse arguments and call these; they hold no logic of
their own that another tool or a test would have to import through ``sys.path``.
"""
from .model import (build_backbone_from_config, build_model_from_config, existing_file,
                    load_config, strip_backbone_dcn)

__all__ = ['build_backbone_from_config', 'build_model_from_config', 'existing_file',
           'load_config', 'strip_backbone_dcn']
