"""Small helpers with no place in the model code: what machine a measurement ran on."""
from .machine import machine_line

__all__ = ['machine_line']
