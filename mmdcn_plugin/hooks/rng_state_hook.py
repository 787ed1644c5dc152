"""RNGStateHook: checkpoints carry the random-number generators, so resume is exact.

MMEngine's checkpoints restore the model, optimizer, schedulers and counters, but not
the global RNGs that augmentation (numpy: ``RandomFlip``) and sampling (torch: the
RPN/RoI ``RandomSampler``) draw from; a resumed run therefore continues from the
seed's first draws, not where the killed run was.  This hook stores the Python,
numpy and torch (CPU, and CUDA when present) generator states in every checkpoint
and restores them on resume.  With ``num_workers=0`` (augmentation in the main
process) and ``randomness=dict(seed=..., deterministic=True)`` a killed and resumed
run ends with the same weights as an uninterrupted one.  With data-loader workers,
their generators are re-seeded by MMEngine per worker and epoch and are not covered.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmdet.registry import HOOKS

KEY = 'mmdcn_rng_state'


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the global RNG states with each checkpoint; restore them when resuming."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(),
                     torch=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint[KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(KEY)
        if state is None:
            runner.logger.warning(f'{type(self).__name__}: the checkpoint has no RNG state '
                                  '(written without this hook); random draws restart from '
                                  'the seed')
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
