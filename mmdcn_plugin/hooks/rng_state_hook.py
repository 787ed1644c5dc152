"""RNGStateHook: checkpoints carry the random-number generators, so resume is exact.

MMEngine's checkpoints restore the model, optimizer, schedulers and counters, but not
the global RNGs that augmentation (numpy: ``RandomFlip``) and sampling (torch: the
RPN/RoI ``RandomSampler``) draw from; a resumed run therefore continues from the
seed's first draws, not where the killed run was.  This hook stores the Python,
numpy, torch CPU and (when present) the current CUDA device's generator states in every
checkpoint and restores them when a training run resumes.  With ``num_workers=0``
(augmentation in the main process) and ``randomness=dict(seed=..., deterministic=True)``
a killed and resumed run ends with the same weights as an uninterrupted one.

Not covered: data-loader workers' generators (re-seeded by MMEngine per worker and
epoch), and ranks other than 0 of a multi-process run (MMEngine saves checkpoints on
rank 0 only, so every rank gets rank 0's states back: exact resume is single-process).

A checkpoint loaded to test (``tools/test.py``) or to fine-tune from (``load_from``)
leaves the generators alone: only a resumed run, whose loop starts past iteration 0,
takes them back, in ``before_train``, before its first draw.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmdet.registry import HOOKS

KEY = 'mmdcn_rng_state'


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the global RNG states with each checkpoint; restore them when resuming."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._loaded = False
        self._state: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(),
                     torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state()
        checkpoint[KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Kept for before_train: whether this load is a resume is known only then.
        self._loaded = True
        self._state = checkpoint.get(KEY)

    def before_train(self, runner) -> None:
        if not self._loaded or runner.iter == 0:
            return  # a fresh run, or load_from (fine-tuning): the seed's generators
        state, self._state = self._state, None
        if state is None:
            runner.logger.warning(f'{type(self).__name__}: the checkpoint has no RNG state '
                                  '(written without this hook); random draws restart from '
                                  'the seed')
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        # MMEngine resumes with map_location=its device: on a GPU the ByteTensors arrive
        # there, and the generators take CPU ByteTensors only.
        torch.set_rng_state(state['torch'].cpu())
        cuda = state.get('cuda')
        if cuda is not None and torch.cuda.is_available():
            if isinstance(cuda, (list, tuple)):  # all devices: checkpoints before 2026-12-05
                index = torch.cuda.current_device()
                cuda = cuda[index] if index < len(cuda) else None
            if cuda is not None:
                torch.cuda.set_rng_state(cuda.cpu())
