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
