"""Small helpers with no place in the model code: what machine a measurement ran on, and
the files a long run leaves behind."""
from .files import last_checkpoint, write_json_atomic, write_text_atomic
from .machine import machine_line

__all__ = ['last_checkpoint', 'machine_line', 'write_json_atomic',
           'write_text_atomic']
