"""The commands and links of README.md and docs/**/*.md are true, so they cannot go stale.

Every Markdown file of the README and ``docs/`` is read, generated reports included
(``docs/study/results.md`` names the command that built it), and the READMEs of
``configs/`` and ``weights/``.  From its shell code blocks
(``bash``, ``sh``, ``shell``, ``console`` or no language) and its inline code, every
command that calls

* ``tools/NAME.py`` (also as ``python tools/NAME.py``, ``.venv/bin/python ...`` or
  ``/path/to/mmdcn_plugin/tools/NAME.py``) or ``bash tools/NAME.sh``: the tool exists;
  every ``--flag`` is one the tool's own argument parser (its subcommand's, for
  ``tools/benchmark.py ops ...``) accepts; a command without placeholders is parsed
  in full by the tool itself (values, choices, required arguments and the tool's own
  checks after parsing) — and the tool's work is never run;
* ``make TARGET [VAR=VALUE]``: the target is in the Makefile, each variable is read by
  the Makefile or ``tools/setup_env.sh``, and a tool the recipe calls is checked with
  the variables given (``make study STUDY_ARGS=--quick`` parses ``tools/study.py --quick``);
* ``python -m MODULE``: the module can be found; a module of this package with a
  ``build_parser()`` must accept the command's flags.

Config paths in those commands must exist (relative to the repository root or to the
page), and so must every repository path written as inline code (``configs/...``,
``mmdcn_plugin/...``, ``tests/...``, ``weights/...``, ``docs/...``, ``tools/NAME``).
Every relative link and image points to a file that exists, and a ``#anchor`` into a
Markdown file names one of its headings (GitHub's rule for heading ids).

Placeholders mark a synopsis rather than a command: upper-case words (``CONFIG``,
``F.pth``), ``[...]``, ``<...>``, ``a|b``, ``...``, ``$VAR``.  A config written
``mmdet::<path>`` (as ``tools/benchmark.py`` takes it) must be one installed with mmdet.

The tools are imported from their files; each exposes ``parse_args`` (or, like
``tools/demo.py`` and mmdet's own ``tools/train.py``/``tools/test.py`` that
``tools/train.py``/``tools/test.py`` run, parses in ``main`` first): the parse is
stopped as soon as it returns.
"""
import argparse
import contextlib
import functools
import importlib.util
import io
import os
import os.path as osp
import re
import shlex
import sys
from typing import List, NamedTuple
from unittest import mock
from urllib.parse import unquote

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHELL_LANGS = {'', 'bash', 'sh', 'shell', 'console', 'zsh'}
README_MAX_LINES = 250


# ---------------------------------------------------------------------------------------
# Reading Markdown


def doc_files() -> List[str]:
    """README.md, every .md under docs/, and the READMEs of configs/ and weights/ (they
    give commands too), as paths relative to the root."""
    files = ['README.md']
    for dirpath, dirnames, filenames in os.walk(osp.join(ROOT, 'docs')):
        dirnames.sort()
        files += [osp.relpath(osp.join(dirpath, f), ROOT) for f in sorted(filenames)
                  if f.endswith('.md')]
    for folder in ('configs', 'weights'):
        for dirpath, dirnames, filenames in os.walk(osp.join(ROOT, folder)):
            dirnames.sort()
            if 'README.md' in filenames:
                files.append(osp.relpath(osp.join(dirpath, 'README.md'), ROOT))
    return files


class Snippet(NamedTuple):
    text: str       # a shell line (continuations joined) or an inline code span
    line: int       # 1-based line in the file
    inline: bool


def split_markdown(text: str):
    """Return (prose, code blocks): prose with every fenced block blanked out (line
    numbers kept), and [(lang, first line number, lines)] of the fenced blocks."""
    prose, blocks = [], []
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r'^\s*(`{3,}|~{3,})\s*([\w+-]*)', line)
        if fence is None and m:
            fence, lang, body, start = m.group(1), m.group(2).lower(), [], number + 1
            prose.append('')
        elif fence is not None and line.strip().startswith(fence):
            blocks.append((lang, start, body))
            fence = None
            prose.append('')
        elif fence is not None:
            body.append(line)
            prose.append('')
        else:
            prose.append(line)
    return '\n'.join(prose), blocks


INLINE_CODE = re.compile(r'(?<!`)`([^`]+)`(?!`)')


def snippets(text: str) -> List[Snippet]:
    """Shell lines of the shell code blocks, and every inline code span of the prose."""
    prose, blocks = split_markdown(text)
    out = []
    for lang, start, body in blocks:
        if lang not in SHELL_LANGS:
            continue
        pending, first = '', None
        for offset, line in enumerate(body):
            if first is None:
                first = start + offset
            if line.rstrip().endswith('\\'):
                pending += line.rstrip()[:-1] + ' '
                continue
            out.append(Snippet(pending + line, first, False))
            pending, first = '', None
        if pending:
            out.append(Snippet(pending, first, False))
    for m in INLINE_CODE.finditer(prose):
        span = m.group(1).replace('\\|', '|').replace('\n', ' ')
        out.append(Snippet(span, prose.count('\n', 0, m.start()) + 1, True))
    return out


# ---------------------------------------------------------------------------------------
# Finding commands


class Command(NamedTuple):
    kind: str               # 'tool', 'make' or 'module'
    name: str               # tools/ file name, or module name; '' for make
    args: List[str]


TOOL = re.compile(r'^(?:\./|.*/mmdcn_plugin/)?tools/([\w.-]+\.(?:py|sh))$')
PYTHON = re.compile(r'^(?:.*/)?python[\d.]*$')
ASSIGN = re.compile(r'^[A-Za-z_]\w*=')
SEPARATORS = {'&&', '||', ';', '|'}


def tokenize(text: str, comments: bool) -> List[str]:
    try:
        return shlex.split(text, comments=comments)
    except ValueError:  # an unbalanced quote in prose: split on white space
        return text.split()


def find_commands(text: str, inline: bool) -> List[Command]:
    """The tool, make and python -m commands in one shell line or inline span."""
    tokens = tokenize(text, comments=not inline)
    segments, current = [], []
    for token in tokens:
        if token in SEPARATORS:
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    found = []
    for seg in segments:
        i = 0
        while i < len(seg) and ASSIGN.match(seg[i]):
            i += 1
        if i < len(seg) and seg[i] == 'make':
            found.append(Command('make', '', seg[i + 1:]))
            continue
        for j, token in enumerate(seg):
            m = TOOL.match(token)
            if m:
                found.append(Command('tool', m.group(1), seg[j + 1:]))
                break
            if PYTHON.match(token):
                k = j + 1
                while k < len(seg) and seg[k].startswith('-') and seg[k] != '-m':
                    k += 1
                if k + 1 < len(seg) and seg[k] == '-m':
                    found.append(Command('module', seg[k + 1], seg[k + 2:]))
                    break
    return found


PLACEHOLDER = re.compile(r'^[A-Z][A-Z0-9_]*(\.[a-z]+)?$|^[A-Z][A-Z0-9_]*=[A-Z][A-Z0-9_]*$')


def is_placeholder(token: str) -> bool:
    return bool(PLACEHOLDER.match(token)) or any(c in token for c in '[]<>{}|…$') \
        or '...' in token


@functools.lru_cache(maxsize=None)
def mmdet_dir() -> str:
    spec = importlib.util.find_spec('mmdet')
    return osp.dirname(spec.origin)


def expand(token: str) -> str:
    """``mmdet::<path>`` as the file installed with mmdet; any other token as it is."""
    if token.startswith('mmdet::'):
        return osp.join(mmdet_dir(), '.mim', 'configs', token[len('mmdet::'):])
    return token


# ---------------------------------------------------------------------------------------
# Running a tool's own parser, never its work


class _Parsed(Exception):
    """Raised as soon as the tool's parsing has returned: its work must not run."""


@functools.lru_cache(maxsize=None)
def load_tool(name: str):
    """(module, path, reads sys.argv) of tools/NAME: for tools/train.py and tools/test.py,
    which run MMDetection's own tool unchanged, the mmdet tool they run."""
    path = osp.join(ROOT, 'tools', name)
    with open(path) as f:
        delegate = re.search(r"run_mmdet_tool\(\s*'([\w.]+)'\s*\)", f.read())
    if delegate:
        import mmdcn_plugin  # noqa: F401  (as the wrapper does first)
        path = osp.join(mmdet_dir(), '.mim', 'tools', delegate.group(1))
    spec = importlib.util.spec_from_file_location(
        '_test_docs_tool_' + re.sub(r'\W', '_', name), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path, bool(delegate)


def run_tool_parser(name: str, argv: List[str], flags_only: bool):
    """Run tools/NAME's own argument parsing on ``argv``.

    Returns (parser, error): the top-level ``ArgumentParser`` the tool built, and what the
    parser (or the tool's own checks after parsing) said on failure, None on success.
    With ``flags_only`` the parser is only built, never asked to parse.
    """
    module, path, reads_sys_argv = load_tool(name)
    built = []
    original = argparse.ArgumentParser.parse_args
    tool_parse_args = getattr(module, 'parse_args', None)

    def parse_args(self, args=None, namespace=None):
        if not built:
            built.append(self)
        if flags_only:
            raise _Parsed
        result = original(self, args, namespace)
        if tool_parse_args is None:  # main() parses itself: stop after it
            raise _Parsed
        return result

    def tool_parse_then_stop(*a, **k):
        tool_parse_args(*a, **k)
        raise _Parsed

    stderr = io.StringIO()
    error = None
    with mock.patch.object(argparse.ArgumentParser, 'parse_args', parse_args), \
            mock.patch.object(sys, 'argv', [path] + list(argv)), \
            mock.patch.dict(os.environ), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        if tool_parse_args is not None:
            module.parse_args = tool_parse_then_stop
        try:
            module.main() if reads_sys_argv else module.main(list(argv))
            error = 'the tool returned without parsing its arguments'
        except _Parsed:
            pass
        except SystemExit as exc:
            lines = stderr.getvalue().strip().splitlines()
            error = lines[-1] if lines else f'exit status {exc.code}'
        finally:
            if tool_parse_args is not None:
                module.parse_args = tool_parse_args
    return (built[0] if built else None), error


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _options(parser: argparse.ArgumentParser) -> set:
    return {s for action in parser._actions for s in action.option_strings}


FLAG = re.compile(r'(?<![\w-])--[A-Za-z0-9][\w-]*')


def flag_problems(parser: argparse.ArgumentParser, args: List[str]) -> List[str]:
    """Flags in ``args`` (a command or a synopsis) that the parser does not accept."""
    known = _options(parser)
    sub = _subparsers(parser)
    if sub is not None:
        words = [a for a in args if not a.startswith(('-', '['))]
        if not words:
            return []
        if words[0] not in sub.choices:
            return [f'{words[0]!r} is not a subcommand (expected one of '
                    f'{", ".join(sorted(sub.choices))})']
        known |= _options(sub.choices[words[0]])
    flags = FLAG.findall(' '.join(args))
    return [f'{flag} is not an option (the parser accepts {", ".join(sorted(known))})'
            for flag in flags if flag not in known]


# ---------------------------------------------------------------------------------------
# Checking one command


@functools.lru_cache(maxsize=None)
def makefile():
    """({target: [recipe lines]}, {variable: default}, Makefile text)."""
    with open(osp.join(ROOT, 'Makefile')) as f:
        text = f.read()
    targets, variables, current = {}, {}, None
    for line in text.splitlines():
        if line.startswith('\t') and current is not None:
            for target in current:
                targets[target].append(line.strip())
            continue
        var = re.match(r'^([A-Za-z_]\w*)\s*(?:\?=|:=|=)\s*(.*)$', line)
        if var:
            variables[var.group(1)] = var.group(2)
            current = None
            continue
        rule = re.match(r'^([^\s:=#][^:=#]*):(?!=)', line)
        if rule:
            current = [t for t in rule.group(1).split() if not t.startswith(('.', '$'))]
            for target in current:
                targets.setdefault(target, [])
        elif line.strip() and not line.startswith('#'):
            current = None
    return targets, variables, text


def _expand_make(line: str, values: dict) -> str:
    for _ in range(5):
        line = re.sub(r'\$\((\w+)\)', lambda m: values.get(m.group(1), ''), line)
    return line


def module_flag_problems(name: str, args: List[str]) -> List[str]:
    """The flags of ``python -m name ...`` against the module's ``build_parser()``, for
    this package's modules that have one (others: only that the module exists)."""
    if not name.startswith('mmdcn_plugin.'):
        return []
    parser_fn = getattr(importlib.import_module(name), 'build_parser', None)
    if parser_fn is None:
        return []
    return [f'python -m {name}: {p}' for p in flag_problems(parser_fn(), args)]


def check_command(cmd: Command, inline: bool, page: str) -> List[str]:
    """What is wrong with one command ([] when nothing is)."""
    if cmd.kind == 'module':
        try:
            found = importlib.util.find_spec(cmd.name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return [f'python -m {cmd.name}: no module {cmd.name!r}']
        return module_flag_problems(cmd.name, cmd.args)
    if cmd.kind == 'make':
        return check_make(cmd.args, page)
    return check_tool(cmd.name, cmd.args, inline, page)


def check_make(args: List[str], page: str) -> List[str]:
    targets, variables, text = makefile()
    problems = []
    given = dict(a.split('=', 1) for a in args if ASSIGN.match(a))
    names = [a for a in args if not a.startswith('-') and not ASSIGN.match(a)]
    with open(osp.join(ROOT, 'tools', 'setup_env.sh')) as f:
        setup_env = f.read()
    for var in given:
        if f'$({var})' not in text and var not in setup_env:
            problems.append(f'make {var}=...: neither the Makefile nor tools/setup_env.sh '
                            f'reads {var}')
    for name in names:
        if name not in targets:
            problems.append(f'make {name}: no such target (the Makefile has '
                            f'{", ".join(sorted(targets))})')
            continue
        values = {**variables, **given}
        for line in targets[name]:
            for cmd in find_commands(_expand_make(line, values), inline=False):
                problems += [f'make {name} runs `{_expand_make(line, values)}`: {p}'
                             for p in check_command(cmd, False, page)]
    return problems


def _existing(path: str, page: str) -> bool:
    if osp.isabs(path):
        return osp.exists(path)
    return osp.exists(osp.join(ROOT, path)) or \
        osp.exists(osp.join(ROOT, osp.dirname(page), path))


def check_tool(name: str, args: List[str], inline: bool, page: str) -> List[str]:
    if not osp.isfile(osp.join(ROOT, 'tools', name)):
        return [f'tools/{name} does not exist']
    problems = [f'config {a} does not exist' for a in args
                if (a.endswith('.py') or a.startswith('configs/')) and not is_placeholder(a)
                and not a.startswith('/path/to/') and not _existing(expand(a), page)]
    if not name.endswith('.py') or (inline and not args):
        return problems  # a shell script, or the tool named in prose
    if any(is_placeholder(a) for a in args):
        parser, error = run_tool_parser(name, args, flags_only=True)
        if parser is None:
            return problems + [f'tools/{name}: no argument parser was built ({error})']
        return problems + [f'tools/{name}: {p}' for p in flag_problems(parser, args)]
    parser, error = run_tool_parser(name, args, flags_only=False)
    if error is not None:
        problems.append(f'tools/{name} {" ".join(args)}: the tool refuses it: {error}')
    elif parser is not None:  # argparse takes '--max-run' for '--max-runs'; a page must not
        problems += [f'tools/{name}: {p}' for p in flag_problems(parser, args)]
    return problems


REPO_PATH = re.compile(r'^(?:configs|mmdcn_plugin|tests|weights|docs)/[\w./-]*$'
                       r'|^tools/[\w.-]+$')


def check_text(text: str, page: str) -> List[str]:
    """Every problem of the commands and repository paths in one Markdown text."""
    problems = []
    for snip in snippets(text):
        where = f'{page}:{snip.line}: `{snip.text.strip()}`'
        for cmd in find_commands(snip.text, snip.inline):
            problems += [f'{where}: {p}' for p in check_command(cmd, snip.inline, page)]
        path = snip.text.strip()
        if snip.inline and REPO_PATH.match(path) and not is_placeholder(path) \
                and not osp.exists(osp.join(ROOT, path)):
            problems.append(f'{where}: {path} does not exist')
    return problems


# ---------------------------------------------------------------------------------------
# Links


LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
REF_DEF = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', re.M)
HTML_SRC = re.compile(r'<(?:img|a)\b[^>]*?\s(?:src|href)\s*=\s*"([^"]+)"', re.I)


def github_slug(heading: str) -> str:
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links keep their text
    text = text.replace('`', '').strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(text: str) -> set:
    prose, _ = split_markdown(text)
    seen, out = {}, set()
    for line in prose.splitlines():
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f'{slug}-{n}')
    return out


def link_targets(text: str) -> List[tuple]:
    prose, _ = split_markdown(text)
    prose = INLINE_CODE.sub(lambda m: ' ' * len(m.group(0)), prose)
    out = []
    for regex in (LINK, REF_DEF, HTML_SRC):
        for m in regex.finditer(prose):
            out.append((m.group(1), prose.count('\n', 0, m.start()) + 1))
    return out


def check_links(text: str, page: str) -> List[str]:
    problems = []
    for target, line in link_targets(text):
        if re.match(r'^[a-zA-Z][\w+.-]*:', target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        where = f'{page}:{line}: link {target}'
        full = osp.normpath(osp.join(ROOT, osp.dirname(page), unquote(path))) if path \
            else osp.join(ROOT, page)
        if path and not osp.exists(full):
            problems.append(f'{where}: {osp.relpath(full, ROOT)} does not exist')
            continue
        if anchor and full.endswith('.md') and (not path or osp.isfile(full)):
            if path:
                with open(full, encoding='utf-8') as f:
                    target_text = f.read()
            else:
                target_text = text
            if anchor.lower() not in anchors(target_text):
                problems.append(f'{where}: no heading #{anchor} in '
                                f'{osp.relpath(full, ROOT)}')
    return problems


# ---------------------------------------------------------------------------------------
# The tests: every page


def _read(page: str) -> str:
    with open(osp.join(ROOT, page), encoding='utf-8') as f:
        return f.read()


PAGES = doc_files()


@pytest.mark.parametrize('page', PAGES)
def test_commands_match_the_tools(page):
    problems = check_text(_read(page), page)
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('page', PAGES)
def test_links_point_to_files_that_exist(page):
    problems = check_links(_read(page), page)
    assert not problems, '\n'.join(problems)


def test_every_page_is_in_the_index():
    index = {osp.normpath(osp.join('docs', t.partition('#')[0]))
             for t, _ in link_targets(_read('docs/README.md'))}
    top = [p for p in PAGES if osp.dirname(p) == 'docs' and p != 'docs/README.md']
    assert top, 'no pages under docs/'
    assert not [p for p in top if p not in index], 'pages missing from docs/README.md'
    assert 'docs/README.md' in {t.partition('#')[0] for t, _ in link_targets(_read('README.md'))}


def test_the_readme_stays_a_front_door():
    lines = _read('README.md').count('\n')
    assert lines <= README_MAX_LINES, (
        f'README.md has {lines} lines (at most {README_MAX_LINES}): move the depth to a '
        'page under docs/ and link it')


def test_the_docs_hold_commands_to_check():
    commands = [c for page in PAGES for s in snippets(_read(page))
                for c in find_commands(s.text, s.inline)]
    kinds = {c.kind for c in commands}
    assert {'tool', 'make', 'module'} <= kinds, kinds
    assert len(commands) > 50, len(commands)


# ---------------------------------------------------------------------------------------
# The checker itself fails where it should


def _problems(markdown: str, page: str = 'docs/fake.md') -> List[str]:
    return check_text(markdown, page)


def test_checker_finds_commands_in_blocks_and_inline_code():
    text = ('```bash\nmake demo  # the main job\n.venv/bin/python tools/study.py \\\n'
            '    --max-runs 1\n```\nRun `python -m pytest tests` or `tools/demo.py --at-once 1`.\n'
            '```python\nimport os  # tools/nothing.py --x\n```\n')
    found = [c for s in snippets(text) for c in find_commands(s.text, s.inline)]
    assert found == [Command('make', '', ['demo']),
                     Command('tool', 'study.py', ['--max-runs', '1']),
                     Command('module', 'pytest', ['tests']),
                     Command('tool', 'demo.py', ['--at-once', '1'])]


def test_checker_accepts_true_commands_and_synopses():
    assert _problems('```bash\n.venv/bin/python tools/make_synthetic_coco.py --out-dir d '
                     '--num-train 8\nmake study STUDY_ARGS=--quick\n```\n'
                     '`python tools/benchmark.py model CONFIG [--iters N] --out-dir D`\n') == []


@pytest.mark.parametrize('markdown, expected', [
    ('```bash\npython tools/make_synthetic_coco.py --out-dir d --num-trian 8\n```',
     'the tool refuses it'),
    ('`python tools/make_synthetic_coco.py --out-dir d --deformation wobbly`',
     'invalid choice'),
    ('`python tools/study.py --epochs 24 --quick`', '--epochs: not with --quick'),
    ('`python tools/study.py --max-run 1`', '--max-run is not an option'),
    ('`python tools/benchmark.py ops --devise cuda --out-dir D`', '--devise is not an option'),
    ('`python tools/benchmark.py opz --out-dir D`', "'opz' is not a subcommand"),
    ('`python tools/train.py CONFIG [--work-dri D]`', '--work-dri is not an option'),
    ('`python tools/no_such_tool.py --x`', 'tools/no_such_tool.py does not exist'),
    ('`python tools/get_flops.py configs/no/such.py`', 'config configs/no/such.py does not '
     'exist'),
    ('`python tools/benchmark.py model mmdet::dcn/no-such.py --out-dir d`',
     'config mmdet::dcn/no-such.py does not exist'),
    ('```sh\nmake no-such-target\n```', 'make no-such-target: no such target'),
    ('`make study NO_SUCH_VAR=1`', 'reads NO_SUCH_VAR'),
    ('`make study STUDY_ARGS=--no-such-flag`', 'make study runs'),
    ('`python -m no_such_module_here`', "no module 'no_such_module_here'"),
    ('`python -m mmdcn_plugin.ops.backends.triton.tune --dtype fp16`',
     '--dtype is not an option'),
    ('see `mmdcn_plugin/no_such_file.py`', 'does not exist'),
])
def test_checker_finds_a_bad_command(markdown, expected):
    problems = _problems(markdown)
    assert len(problems) == 1 and expected in problems[0], problems


def test_checker_finds_a_bad_link():
    page = 'docs/fake.md'
    assert check_links('[ok](op.md) ![fig](demo/convergence.png) [web](https://x.org/a.md) '
                       '[here](#a-b) [there](op.md#the-layer-deformableconv2d)\n\n## A b\n',
                       page) == []
    bad = check_links('[gone](no_such_page.md)\n![gone](demo/no.png)\n'
                      '[anchor](op.md#no-such-heading)\n[self](#nowhere)\n'
                      '<img src="missing.png">\n[ref]: missing_ref.md\n', page)
    assert len(bad) == 6, bad
    assert 'docs/no_such_page.md does not exist' in bad[0]
    assert 'no heading #no-such-heading in docs/op.md' in '\n'.join(bad)


def test_github_slugs():
    assert github_slug("Switching one of mmdet's DCN configs: one word") == \
        'switching-one-of-mmdets-dcn-configs-one-word'
    assert github_slug('The layer: `DeformableConv2d`') == 'the-layer-deformableconv2d'
    assert github_slug('Safe checkpoint loading (torch >= 2.6)') == \
        'safe-checkpoint-loading-torch--26'
    assert anchors('# A\n## A\n```\n# not a heading\n```\n') == {'a', 'a-1'}
