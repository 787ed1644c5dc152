"""mmdcn_plugin.study.recipe: the recipe read from the quick-start config, and each
run's config."""

import pytest

from mmdcn_plugin import study
from mmdcn_plugin.study import (StudySetup, read_recipe, run_overrides, write_run_config)
from study_helpers import recipe_config


def test_recipe_reads_an_iteration_schedule(tmp_path):
    config = recipe_config(tmp_path, "train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', "
                     "max_iters=720, val_interval=90)\nnum_train_images = 1500\n"
                     "num_val_images = 120")
    recipe = read_recipe(config)
    assert (recipe.by_epoch, recipe.length, recipe.val_interval) == (False, 720, 90)
    assert (recipe.num_train, recipe.num_val, recipe.image_size) == (1500, 120, 128)
    assert recipe.describe().startswith('720 iterations (validation every 90), batch 8, 1500')
    quick = read_recipe(config, quick=True)
    assert (quick.by_epoch, quick.length, quick.num_train, quick.num_val) == (False, 2, 8, 4)
    assert quick.quick and quick.batch_size == 4


def test_recipe_reads_an_epoch_schedule(tmp_path):
    recipe = read_recipe(recipe_config(tmp_path, "train_cfg = dict(max_epochs=6, val_interval=2)"))
    assert (recipe.by_epoch, recipe.length, recipe.val_interval) == (True, 6, 2)
    quick = read_recipe(recipe_config(tmp_path, ''), quick=True)
    assert (quick.by_epoch, quick.length, quick.batch_size) == (True, 1, 4)  # 2 iterations
    overrides = run_overrides(quick, '/d', 0, 'a')
    assert overrides['train_cfg'] == dict(max_epochs=1, val_interval=1)


def test_epochs_stretch_the_schedule_and_its_lr_drops():
    recipe = read_recipe(epochs=24)
    assert (recipe.by_epoch, recipe.length) == (True, 24)
    # The quick-start recipe: 8 epochs, LR drops after 5 and 6, a 50-iteration warm-up.
    o = run_overrides(recipe, '/d', 0, 'b')
    assert o['train_cfg'] == dict(max_epochs=24)
    warmup, steps = o['param_scheduler']
    assert (warmup['by_epoch'], warmup['end']) == (False, 50)   # iterations: kept
    assert (steps['milestones'], steps['begin'], steps['end']) == ([15, 18], 0, 24)
    assert 'RandomRotateScaleShear' in [p['type'] for p in
                                        o['train_dataloader']['dataset']['pipeline']]
    # Milestones stay distinct and inside the run when squeezed.
    from mmengine.config import Config
    cfg = Config(dict(train_cfg=dict(max_epochs=8), param_scheduler=[
        dict(type='MultiStepLR', by_epoch=True, begin=0, end=8, milestones=[5, 6])]))
    assert study.scaled_schedule(cfg, 2)['param_scheduler'][0]['milestones'] == [1, 2]
    assert StudySetup(recipe, '', '', arms=('b',), seeds=(0,)).command() == \
        'python tools/study.py --epochs 24 --arms b --seeds 0'
    from mmdcn_plugin.study.report import _stretched   # the report's header says so
    assert "stretched by `--epochs` from the config's 8" in _stretched(StudySetup(recipe, '', ''))
    assert _stretched(StudySetup(read_recipe(), '', '')) == ''
    assert study.stretched_from(recipe) == 8 and study.stretched_from(read_recipe()) is None
    assert study.stretched_from(read_recipe(quick=True)) is None
    with pytest.raises(ValueError, match=r'epochs: expected a positive int .* got 0'):
        read_recipe(epochs=0)
    with pytest.raises(ValueError, match=r'epochs: .* got 3 \(quick=True'):
        read_recipe(quick=True, epochs=3)


def test_recipe_errors_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r'train_cfg must hold max_epochs .* or max_iters'):
        read_recipe(recipe_config(tmp_path, "train_cfg = dict(_delete_=True, type='X')"))
    with pytest.raises(ValueError, match=r'num_val_images must be a positive int, got 0'):
        read_recipe(recipe_config(tmp_path, 'num_val_images = 0'))


def test_a_run_adds_its_seed_its_data_and_in_arm_b_the_augmentation():
    recipe = read_recipe()
    a = run_overrides(recipe, '/d/x', 3, 'a')
    assert a['randomness'] == dict(seed=3)
    assert a['val_dataloader']['dataset']['data_root'] == '/d/x/'
    assert a['test_evaluator']['ann_file'] == '/d/x/annotations/val.json'
    assert 'pipeline' not in a['train_dataloader']['dataset'] and 'train_cfg' not in a
    b = run_overrides(recipe, '/d/x', 3, 'b')
    types = [s['type'] for s in b['train_dataloader']['dataset']['pipeline']]
    i = types.index('LoadAnnotations')
    assert types[i + 1] == 'RandomRotateScaleShear'
    load = b['train_dataloader']['dataset']['pipeline'][i]
    assert load['with_mask'] and not load['poly2mask']
    with pytest.raises(ValueError, match="arm: expected 'a' or 'b', got 'c'"):
        run_overrides(recipe, '/d', 0, 'c')
    with pytest.raises(ValueError, match='expected a LoadAnnotations step'):
        study.augmented_pipeline([dict(type='LoadImageFromFile')])


def test_the_arm_b_config_trains_through_the_augmentation(tmp_path):
    from mmdet.registry import DATASETS
    from mmdcn_plugin.robustness.augment import RandomRotateScaleShear
    recipe = read_recipe(quick=True)
    root = study.ensure_dataset(str(tmp_path), recipe, log=lambda msg: None)
    cfg = study.run_config(recipe, root, arm='b')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert any(isinstance(t, RandomRotateScaleShear) for t in dataset.pipeline.transforms)
    item = dataset[0]
    assert item['inputs'].shape[1:] == (128, 128)
    assert len(item['data_samples'].gt_instances) > 0
    assert 'masks' not in item['data_samples'].gt_instances   # dropped for Faster R-CNN


def test_a_run_config_is_not_silently_replaced(tmp_path):
    path = str(tmp_path / 'c.py')
    text = write_run_config(path, 'base.py', dict(randomness=dict(seed=1)))
    assert "_base_ = 'base.py'" in text and 'randomness = ' in text
    assert write_run_config(path, 'base.py', dict(randomness=dict(seed=1))) == text
    with pytest.raises(ValueError, match='holds another run config'):
        write_run_config(path, 'base.py', dict(randomness=dict(seed=2)))
