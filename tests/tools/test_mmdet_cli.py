"""tools/train.py and tools/test.py offer exactly the options of the installed mmdet's own tools."""
import re

import pytest

from ghm_mmdet.apis import mmdet_tool

from tool_runs import PYTHON, TOOLS, last_lines

pytestmark = [pytest.mark.slow, pytest.mark.compat]


def options_in_help(text):
    return set(re.findall(r'(?<![\w-])(--?[a-zA-Z][\w-]*)', text.split('\n\n', 1)[1]))


@pytest.mark.parametrize('name', ['train.py', 'test.py'])
def test_help_is_the_installed_mmdets(tools, name):
    ours = tools.run([PYTHON, TOOLS / name, '--help'])
    theirs = tools.run([PYTHON, mmdet_tool(name), '--help'])
    assert ours.returncode == theirs.returncode == 0, last_lines(ours.output + theirs.output)
    assert ours.stdout == theirs.stdout
    # Against the file itself: every option its argparse declares, and no other.
    declared = set(re.findall(r"add_argument\(\s*'(--?[\w-]+)'(?:,\s*'(--?[\w-]+)')?", mmdet_tool(name).read_text()))
    declared = {option for pair in declared for option in pair if option} | {'-h', '--help'}
    assert options_in_help(ours.stdout) == declared
