"""ghm_mmdet.apis.errors: user mistakes become one sentence; anything else keeps its traceback."""
import pytest

from ghm_mmdet.apis.checkpoint import UnsafeCheckpointError
from ghm_mmdet.apis.errors import EXIT_USER_ERROR, ToolError, explain, plain_failures

CONFIG = 'configs/demo.py'


def test_file_not_found_with_filename_names_the_file():
    error = FileNotFoundError(2, 'No such file or directory', 'data/coco/annotations/train.json')
    assert explain(error, CONFIG) == (
        'file data/coco/annotations/train.json does not exist (check the dataset paths data_root, ann_file '
        'and data_prefix in config configs/demo.py)')


def test_file_not_found_rewrapped_by_mmengine_build_still_names_the_file():
    # mmengine's build_from_cfg re-raises type(e)(f'class `X` in ...: {e}'), which drops .filename.
    error = FileNotFoundError("class `CocoDataset` in mmdet/datasets/coco.py: [Errno 2] No such file or "
                              "directory: 'data/x/val.json'")
    assert explain(error).startswith('file data/x/val.json does not exist')


def test_file_not_found_from_dataloader_worker_names_the_image():
    error = FileNotFoundError("Caught FileNotFoundError in DataLoader worker process 0.\nOriginal Traceback "
                              "(most recent call last):\n  ...\nFileNotFoundError: [Errno 2] No such file or "
                              "directory: 'data/ghm_demo/train/000001.png'\n")
    assert explain(error).startswith('file data/ghm_demo/train/000001.png does not exist')


def test_missing_checkpoint_from_mmengine_loader():
    assert explain(FileNotFoundError('work_dirs/x/epoch_1.pth can not be found.')) == \
        'checkpoint file work_dirs/x/epoch_1.pth does not exist'


def test_unregistered_type():
    error = KeyError('RetinaHeadd is not in the mmdet::model registry. Please check whether the value of '
                     '`RetinaHeadd` is correct or it was registered as expected. More details can be found '
                     'at https://mmengine.readthedocs.io/')
    assert explain(error, CONFIG) == ("type='RetinaHeadd' in config configs/demo.py is not a registered "
                                      'mmdet::model type (a typo, or a missing custom_imports?)')


def test_unexpected_argument_with_and_without_build_prefix():
    plain = TypeError("IterBasedTrainLoop.__init__() got an unexpected keyword argument 'max_iter'")
    wrapped = TypeError("class `GHMC` in ghm_mmdet/models/losses/ghm_loss.py: GHMC.__init__() got an "
                        "unexpected keyword argument 'bin'")
    assert explain(plain, CONFIG) == ("IterBasedTrainLoop does not take the argument 'max_iter' given in "
                                      'config configs/demo.py (a typo in that key?)')
    assert explain(wrapped).startswith("GHMC does not take the argument 'bin' given")


def test_missing_argument():
    error = TypeError("class `GHMR` in x.py: GHMR.__init__() missing 1 required positional argument: 'mu'")
    assert explain(error, CONFIG) == "GHMR needs the argument(s) 'mu', missing in config configs/demo.py"


def test_refused_checkpoint_rewrapped_by_build_keeps_its_sentence():
    error = UnsafeCheckpointError("class `X` in y.py: refusing to load checkpoint a.pth: it holds ...")
    assert explain(error) == 'refusing to load checkpoint a.pth: it holds ...'


@pytest.mark.parametrize('error', [
    RuntimeError('CUDA out of memory'),
    KeyError('bbox_head'),
    TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
    FileNotFoundError(),
    ValueError('x'),
])
def test_bugs_are_not_explained(error):
    assert explain(error) is None


def test_plain_failures_prints_one_line_and_exits_1(capsys):
    with pytest.raises(SystemExit) as info:
        with plain_failures('train.py', CONFIG):
            raise ToolError('config file x.py does not exist')
    assert info.value.code == EXIT_USER_ERROR == 1
    assert capsys.readouterr().err == 'train.py: error: config file x.py does not exist\n'


def test_plain_failures_lets_bugs_through_with_traceback():
    with pytest.raises(ZeroDivisionError):
        with plain_failures('train.py'):
            1 / 0


def test_plain_failures_keeps_traceback_when_asked(monkeypatch):
    monkeypatch.setenv('GHM_MMDET_TRACEBACK', '1')
    with pytest.raises(ToolError):
        with plain_failures('train.py'):
            raise ToolError('x')


class Loss:
    def __init__(self, bins):
        if bins < 1:
            raise ValueError(f'bins must be an int >= 1, got {bins}')


class Head:
    def __init__(self, loss_bins):
        self.loss = Loss(loss_bins)
        raise ValueError('shape mismatch')


def raised(make):
    try:
        make()
    except Exception as error:  # noqa: BLE001
        return error
    raise AssertionError('nothing raised')


def test_argument_check_in_a_constructor_names_the_innermost_class():
    error = raised(lambda: Head(loss_bins=0))
    assert explain(error, CONFIG) == 'Loss in config configs/demo.py: bins must be an int >= 1, got 0'


def test_other_errors_in_constructors_are_not_explained():
    assert explain(raised(lambda: Head(loss_bins=1))) is None  # no argument check: a bug


def test_argument_check_outside_a_constructor_is_not_explained():
    def check(bins):
        raise ValueError(f'bins must be an int >= 1, got {bins}')
    assert explain(raised(lambda: check(0))) is None
