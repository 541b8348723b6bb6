"""Test-session set-up shared by every test directory."""
import os


def pytest_configure(config):
    """Under pytest-xdist (pytest.ini runs one worker per core), one torch thread per worker.

    Two workers that each run OpenMP with a thread per core spin against each other and make every test many
    times slower; with one thread each, the workers use the cores side by side. The processes the tests
    start inherit the setting through ``OMP_NUM_THREADS``.
    """
    if os.environ.get('PYTEST_XDIST_WORKER') is None:
        return
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('MKL_NUM_THREADS', '1')
    import torch
    threads = os.environ['OMP_NUM_THREADS']
    torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else 1)


def pytest_collection_modifyitems(config, items):
    """The end-to-end (``slow``) test files first, the rest in their usual order after them.

    pytest-xdist hands whole files to the workers in this order; starting with the long ones and ending
    with the many short ones keeps both workers busy to the end (the demo's training alone is a third of
    the suite's work). Order within a file is unchanged.
    """
    slow_files = {item.nodeid.split('::')[0] for item in items if item.get_closest_marker('slow')}
    items.sort(key=lambda item: item.nodeid.split('::')[0] not in slow_files)
