"""``mmdcn_plugin.engine.mmdet_tools``: mmdet's tools run through the package, and a
CPU-distributed run (gloo) set up before the tool and taken down after it."""
import subprocess
import sys
import textwrap

import pytest

from mmdcn_plugin.engine.mmdet_tools import tool_command

# A stand-in for mmdet's train.py: what the process group looks like while it runs.
FAKE_TOOL = '''
import atexit
import sys
import torch.distributed as dist

def main():
    print('during:', dist.is_initialized() and dist.get_backend(), sys.argv[1:])
    atexit.register(print, 'atexit: ran')
'''


def _run_fake_tool(tmp_path, env_extra, *args):
    tool = tmp_path / 'train.py'
    tool.write_text(FAKE_TOOL)
    code = textwrap.dedent(f'''
        import torch.distributed as dist
        from mmdcn_plugin.engine import mmdet_tools
        mmdet_tools.mmdet_tool_path = lambda name: {str(tool)!r}
        rc = mmdet_tools.run_mmdet_tool('train.py', {list(args)!r})
        print('after:', rc, dist.is_initialized())
    ''')
    env = {'PATH': '/usr/bin:/bin', **env_extra}
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines()
            if line.startswith(('during', 'after', 'atexit'))]


def test_gloo_rank_runs_the_tool_then_exits_without_teardown(tmp_path):
    """torchrun's variables on a machine without CUDA: the tool runs in a gloo group
    with the CPU wrapper selected; once it returns, the rank runs the atexit handlers
    and exits with 0 there (through the interpreter's teardown, a rank of a finished
    run sometimes aborted)."""
    torchrun_env = dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
                        MASTER_PORT='29531')
    during, ran = _run_fake_tool(tmp_path, torchrun_env, 'cfg.py', '--launcher', 'pytorch')
    assert during.startswith("during: gloo ['cfg.py', '--launcher', 'pytorch', "
                             "'--cfg-options', 'model_wrapper_cfg.type=mmdet.CPUDistributed")
    assert ran == 'atexit: ran'


def test_single_process_run_has_no_group(tmp_path):
    during, after, ran = _run_fake_tool(tmp_path, {}, 'cfg.py')
    assert during == "during: False ['cfg.py']"
    assert (after, ran) == ('after: 0 False', 'atexit: ran')


def test_tool_command_names_the_tool_or_refuses():
    assert tool_command('test', 'c.py', 'w.pth')[1:] == [
        '-m', 'mmdcn_plugin.engine.mmdet_tools', 'test', 'c.py', 'w.pth']
    with pytest.raises(ValueError, match=r"name: expected one of \['train', 'test'\], "
                       r"got 'infer'"):
        tool_command('infer')
