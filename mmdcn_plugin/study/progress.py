"""The study's progress lines: ``[study HH:MM:SS] message``, one write per line."""
import sys
import time


def log(msg: str) -> None:
    # One write per line: runs finishing side by side must not interleave their lines.
    sys.stdout.write(f'[study {time.strftime("%H:%M:%S")}] {msg}\n')
    sys.stdout.flush()
