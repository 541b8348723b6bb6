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
    # Ranges, not pins: the plugin goes into environments that already hold these, and must replace none of
    # them. tools/setup_env.sh pins the two tested corners (STACK=newest, STACK=oldest).
    install_requires=[
        'torch>=2.0,<2.15',  # 2.0.1: the oldest tested corner; 2.14: the newest release installable here
        'mmengine>=0.7.1,<1',  # 0.7.1: the oldest tested corner (mmdet 3.0's own minimum); 1.x: API unknown
        'mmcv>=2.0.0,<2.2.0',  # 2.0.1: the oldest tested corner; mmdet 3.x refuses mmcv 2.2
        'mmdet>=3.0.0,<4',  # 3.0.0: the oldest tested corner; 4.x may change the heads' loss interface
        'pycocotools',  # the demo's COCO evaluation (any release mmdet accepts)
    ],
    extras_require={
        'tests': [
            'pytest>=7',
            'hypothesis>=6',
            'pytest-xdist>=3',  # pytest.ini runs a worker per core
            'pytest-timeout>=2.1',  # pytest.ini's per-test limit: a hung test fails with its stacks, CI goes on
            'scikit-learn',  # PAAHead's Gaussian mixture, in the head matrix (any release mmdet's PAA imports)
            'ruff>=0.4',  # .ci/run's linter and import sorter (ruff.toml); 0.4: the [lint] section of ruff.toml
        ],
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
