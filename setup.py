"""ghm-mmdet: Gradient Harmonizing Mechanism (GHM-C / GHM-R) for MMDetection 3.x."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    scope = {}
    with open(osp.join(HERE, 'ghm_mmdet', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='ghm-mmdet',
    version=read_version(),
    description='Gradient Harmonizing Mechanism (GHM-C, GHM-R) losses and RetinaNet-GHM for MMDetection 3.x',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['ghm_mmdet', 'ghm_mmdet.*']),
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.5',  # the tools' weights-only checkpoint allowlist needs torch.serialization.safe_globals
        'mmengine==0.10.7',  # the release the tools' checkpoint allowlist and dist handling are written for
        'mmcv==2.1.0',  # mmdet 3.3.0 needs mmcv<2.2.0; 2.1.0 is the newest release that builds with torch 2.x
        'mmdet==3.3.0',  # our GHMC/GHMR reproduce this release's numbers and override its registry entries
        'setuptools>=77,<81',  # mmcv 2.1.0's setup.py imports pkg_resources, removed in setuptools 81
        'pycocotools',
    ],
    extras_require={
        'tests': ['pytest>=7', 'hypothesis>=6', 'pytest-xdist>=3'],  # pytest.ini runs a worker per core
        'tools': [
            'matplotlib>=3.4',  # tools/analysis_tools/plot_gradient_density.py's figures (Axes.stairs)
            'tensorboard',  # TensorboardVisBackend for GHMStatsHook; the tests read its EventAccumulator
            'scipy',  # benchmarks/compare_losses.py's Welch t-test (mmdet 3.3.0 installs it too)
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
