"""Files that a long run leaves behind: its last checkpoint, and results written whole."""
import json
import os
import os.path as osp
from typing import Optional


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint MMEngine wrote last in ``work_dir`` (named in its ``last_checkpoint``
    file); None when there is none or it has been removed since."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        ckpt = f.read().strip()
    return ckpt if ckpt and osp.isfile(ckpt) else None


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a reader
    finds the whole file or none (a study run with a JSON is a finished run)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)


def write_json_atomic(path: str, record, indent: int = 1) -> None:
    """:func:`write_text_atomic` of ``record`` as JSON."""
    write_text_atomic(path, json.dumps(record, indent=indent))
