"""What installing ghm-mmdet gives: ``import ghm_mmdet`` loads the plugin and nothing else, its wheel holds the
package and no benchmark, and installing it into an environment that already holds torch, mmcv, mmdet and
mmengine replaces none of them: pip's own plan (``--dry-run --report``), for the source tree (editable) and for
a built wheel.

Runs at both tested corners, so each bound of ``install_requires`` admits the stack it names.
"""
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACK = ('torch', 'mmcv', 'mmdet', 'mmengine')
pytestmark = pytest.mark.compat


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


@pytest.mark.slow
def test_editable_install_replaces_none_of_the_stack(tmp_path, installed_stack):
    check_plan(planned_installs(['-e', str(ROOT)], tmp_path), installed_stack)


def copy_checkout(destination):
    """Copy the checkout's files as git lists them (tracked or untracked, not ignored, not deleted) into
    ``destination``.

    pip builds a source tree in place, and setuptools packs whatever an earlier build left in its ``build/``,
    so a wheel built from the checkout itself could hold modules that the tree no longer has.
    """
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode()
    for name in filter(None, listed.split('\0')):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    source = copy_checkout(tmp_path_factory.mktemp('source'))
    dist = tmp_path_factory.mktemp('dist')
    pip('wheel', '--no-deps', '--no-build-isolation', '-w', str(dist), str(source), cwd=dist)
    built, = dist.glob('ghm_mmdet-*.whl')
    return built


@pytest.mark.slow
def test_wheel_install_replaces_none_of_the_stack(tmp_path, wheel, installed_stack):
    check_plan(planned_installs([str(wheel)], tmp_path), installed_stack)


@pytest.mark.slow
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


def test_wheel_holds_the_package_its_license_and_no_benchmark(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licenses = [name for name in names if '.dist-info/' in name and name.endswith('LICENSE')]
        assert len(licenses) == 1 and b'Apache License' in archive.read(licenses[0]), names
    assert 'ghm_mmdet/models/losses/ghm_loss.py' in names
    assert [name for name in names if 'benchmarks' in name] == []


# In a fresh interpreter, from the checkout: what `import ghm_mmdet` loads and registers.
IMPORT_PLUGIN = r'''
import json, sys
import ghm_mmdet
from mmdet.registry import DATASETS, MODELS
print(json.dumps(dict(
    loaded=sorted(name for name in sys.modules
                  if name.startswith(('benchmarks', 'ghm_mmdet.benchmarks', 'ghm_mmdet.datasets'))),
    ghmc=getattr(MODELS.module_dict.get('GHMC'), '__module__', None),
    demo_dataset='GHMDemoDataset' in DATASETS.module_dict)))
'''


def test_import_loads_the_plugin_and_nothing_else():
    run = subprocess.run([sys.executable, '-c', IMPORT_PLUGIN], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    # Neither the demo's scene generator (its dataset's package) nor any benchmark: the demo config imports
    # ghm_mmdet.datasets itself, and benchmarks/ is not part of the package.
    assert result['loaded'] == [] and not result['demo_dataset']
    assert result['ghmc'] == 'ghm_mmdet.models.losses.ghm_loss'  # the plugin still registers its losses
