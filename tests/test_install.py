"""Installing ghm-mmdet into an environment that already holds torch, mmcv, mmdet and mmengine replaces none of
them: pip's own plan (``--dry-run --report``), for the source tree (editable) and for a built wheel.

Runs at both tested corners, so each bound of ``install_requires`` admits the stack it names.
"""
import json
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACK = ('torch', 'mmcv', 'mmdet', 'mmengine')
pytestmark = [pytest.mark.slow, pytest.mark.compat]


def pip(*args, cwd=ROOT):
    run = subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check', *args],
                         capture_output=True, text=True, cwd=cwd, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run


def planned_installs(target, tmp_path):
    """``{name: version}`` of what ``pip install TARGET`` would install here."""
    report = tmp_path / 'report.json'
    pip('install', '--dry-run', '--no-build-isolation', '--report', str(report), *target)
    return {item['metadata']['name'].lower().replace('_', '-'): item['metadata']['version']
            for item in json.loads(report.read_text())['install']}


@pytest.fixture(scope='module')
def installed_stack():
    return {name: version(name) for name in STACK}


def check_plan(plan, installed_stack):
    assert 'ghm-mmdet' in plan, plan
    replaced = {name: (installed_stack[name], plan[name]) for name in STACK if name in plan}
    assert not replaced, f'pip would replace {replaced}'


def test_editable_install_replaces_none_of_the_stack(tmp_path, installed_stack):
    check_plan(planned_installs(['-e', str(ROOT)], tmp_path), installed_stack)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp('dist')
    pip('wheel', '--no-deps', '--no-build-isolation', '-w', str(dist), str(ROOT), cwd=dist)
    built, = dist.glob('ghm_mmdet-*.whl')
    return built


def test_wheel_install_replaces_none_of_the_stack(tmp_path, wheel, installed_stack):
    check_plan(planned_installs([str(wheel)], tmp_path), installed_stack)


def test_wheel_metadata_declares_ranges_without_pins_or_build_tools(wheel):
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA')))
    lines = metadata.decode().splitlines()
    requires = {line.split(': ', 1)[1] for line in lines if line.startswith('Requires-Dist: ')
                and 'extra ==' not in line}
    assert 'Requires-Python: >=3.8' in lines
    bounds = {re.split(r'[<>=!~ ]', req, 1)[0]: req for req in requires}
    assert set(STACK) <= set(bounds) and 'setuptools' not in bounds, requires
    for name in STACK:
        assert '>=' in bounds[name] and '<' in bounds[name].replace('<=', ''), bounds[name]
        assert '==' not in bounds[name], bounds[name]
