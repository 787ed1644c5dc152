"""mmdcn_plugin.apis (the one config-to-model builder) and mmdcn_plugin.utils.machine_line."""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import save_checkpoint

from mmdcn_plugin.apis import build_model_from_config, load_config, strip_backbone_dcn
from mmdcn_plugin.layers import DeformableConv2d
from mmdcn_plugin.utils import machine_line
from helpers import one_thread  # noqa: F401  (autouse fixture)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK = osp.join(ROOT, 'configs', 'quickstart')
DCN = osp.join(QUICK, 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
PLAIN = osp.join(QUICK, 'faster-rcnn_r50-narrow_fpn_synthetic.py')


def n_deformable(model):
    return sum(isinstance(m, DeformableConv2d) for m in model.modules())


def first_weight(model):
    return next(model.parameters()).detach().clone()


def test_builds_the_config_in_eval_mode_with_its_config_attached():
    model = build_model_from_config(DCN)
    assert n_deformable(model) == 4 + 6 + 3  # the conv2 of every c3-c5 block
    assert not model.training
    assert model.cfg.model.backbone.dcn.type == 'DeformableConv2d'
    assert next(model.parameters()).device.type == 'cpu'


def test_strip_dcn_builds_the_baseline_and_refuses_a_config_without_dcn():
    assert n_deformable(build_model_from_config(DCN, strip_dcn=True)) == 0
    with pytest.raises(ValueError, match=r'expected a config whose model.backbone.dcn is set, '
                                         r'got backbone.dcn=None'):
        build_model_from_config(PLAIN, strip_dcn=True)
    cfg = strip_backbone_dcn(Config.fromfile(DCN))
    assert cfg.model.backbone.dcn is None
    assert cfg.model.backbone.stage_with_dcn == (False,) * 4


def test_missing_files_are_named():
    with pytest.raises(FileNotFoundError, match=r"config: expected an existing file, got "
                                                r"'nope\.py'"):
        build_model_from_config('nope.py')
    with pytest.raises(FileNotFoundError, match=r"checkpoint: expected an existing file, got "
                                                r"'nope\.pth'"):
        build_model_from_config(DCN, checkpoint='nope.pth')
    with pytest.raises(TypeError, match='config: expected a file path, got int'):
        load_config(3)


def test_cfg_options_are_merged_and_a_passed_config_is_not_changed():
    cfg = Config.fromfile(DCN)
    model = build_model_from_config(cfg, cfg_options={'model.backbone.dcn': None})
    assert n_deformable(model) == 0
    assert cfg.model.backbone.dcn is not None  # the caller's config is untouched
    strip = build_model_from_config(cfg, strip_dcn=True)
    assert n_deformable(strip) == 0 and cfg.model.backbone.dcn is not None


def test_the_configs_default_scope_is_set_whatever_the_current_one():
    """Without it, MMDetection's registry looks 'FasterRCNN' up in MMEngine's root."""
    cfg = Config.fromfile(DCN)
    cfg.pop('default_scope', None)    # none named: mmdet is the default
    init_default_scope('mmengine')
    model = build_model_from_config(cfg)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    assert type(model).__name__ == 'FasterRCNN'


def test_seed_makes_random_weights_repeatable():
    a = first_weight(build_model_from_config(PLAIN, seed=3))
    b = first_weight(build_model_from_config(PLAIN, seed=3))
    c = first_weight(build_model_from_config(PLAIN, seed=4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_checkpoint_weights_and_dataset_meta_are_loaded(tmp_path):
    source = build_model_from_config(DCN, seed=1)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)   # weights no fresh build has
    path = tmp_path / 'model.pth'
    save_checkpoint(dict(state_dict=source.state_dict(),
                         meta=dict(dataset_meta=dict(classes=('a', 'b')))), str(path))
    loaded = build_model_from_config(DCN, checkpoint=path, seed=2)
    for (name, want), got in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(want, got), name
    assert loaded.dataset_meta == dict(classes=('a', 'b'))


def test_init_weights_runs_the_init_cfg_and_restores_the_log_level():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    plain = first_weight(build_model_from_config(DCN, seed=0))
    init = build_model_from_config(DCN, seed=0, init_weights=True)
    assert not torch.equal(plain, first_weight(init))   # ResNet's Kaiming init of the stem
    assert logger.level == level


def test_machine_line_names_cpu_cores_torch_and_threads():
    line = machine_line()
    assert re.fullmatch(r'.+; \d+ cores; torch ' + re.escape(torch.__version__), line), line
    assert machine_line(threads=2) == line + ' with 2 threads'
    with pytest.raises(ValueError, match='threads: expected a positive int or None, got 0'):
        machine_line(threads=0)
