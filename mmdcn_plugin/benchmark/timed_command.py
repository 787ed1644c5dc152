"""One command of the GPU check: run in its own process group, its output into a log,
stopped at its time limit so that it keeps what it did (:mod:`.gpu_check` runs the
steps through :func:`run_command`)."""
import os
import os.path as osp
import shlex
import signal
import subprocess
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

from .gpu_steps import HEARTBEAT_S, _no_log


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f'signal {-rc}'


def _last_line(path: str) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln for ln in f.read().decode('utf-8', 'replace').splitlines() if ln.strip()]
    except OSError:
        return ''
    # Not the command the log starts with: a step that printed nothing has no last line.
    return lines[-1][:160] if lines and not lines[-1].startswith('$ ') else ''


def run_command(argv: Sequence[str], log_path: str, timeout_s: float, cwd: str,
                env: Optional[Dict[str, str]] = None, log: Callable[[str], None] = _no_log,
                heartbeat_s: float = HEARTBEAT_S) -> Tuple[Optional[int], bool, float]:
    """Run ``argv`` with its output into ``log_path``, at most ``timeout_s`` seconds.

    The command gets a process group of its own; on timeout the whole group is
    interrupted (SIGINT: pytest then writes its summary and junit file for the tests
    that ran, a Python tool its partial results), then terminated, then killed.  Every
    ``heartbeat_s`` the log's last line is passed to ``log`` (progress of a long step).

    Returns:
        (return code or None on timeout, timed out, seconds)
    """
    os.makedirs(osp.dirname(osp.abspath(log_path)), exist_ok=True)
    start = time.monotonic()
    with open(log_path, 'w') as logf:
        logf.write(f'$ {shlex.join(argv)}\n')
        logf.flush()
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_default_sigint)
        except OSError as e:
            logf.write(f'could not start: {e}\n')
            return 127, False, time.monotonic() - start
        next_beat = start + heartbeat_s
        while True:
            try:
                rc = proc.wait(timeout=1.0)
                return rc, False, time.monotonic() - start
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now - start > timeout_s:
                _stop_group(proc)
                logf.write(f'\n[gpu-check] stopped after {timeout_s:.0f} s (its budget)\n')
                return None, True, time.monotonic() - start
            if now >= next_beat:
                log(f'  ... {now - start:.0f} s: {_last_line(log_path)}')
                next_beat = now + heartbeat_s


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default.  A shell that starts a
    job in the background sets SIGINT to 'ignore', which children inherit, and Python
    installs its KeyboardInterrupt handler only where SIGINT is not ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# How a timed-out step is stopped: each signal to its process group, then as many
# seconds for it to end.  SIGINT first, so that pytest and the benchmarks keep what ran.
STOP_SIGNALS = ((signal.SIGINT, 8.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in STOP_SIGNALS:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
