"""ghm_mmdet.apis.errors: mistakes that are certainly the user's become one sentence; anything else keeps its
traceback."""
import os

import pytest

from ghm_mmdet.apis.checkpoint import UnsafeCheckpointError
from ghm_mmdet.apis.dist import first_slurm_host
from ghm_mmdet.apis.errors import EXIT_USER_ERROR, ToolError, UserInputs, explain, named_paths, plain_failures
from ghm_mmdet.core.checks import GHMArgumentError, GHMArgumentTypeError, check_bins

CONFIG = 'configs/demo.py'
COCO = dict(
    train_dataloader=dict(dataset=dict(type='CocoDataset', data_root='data/coco/',
                                       ann_file='annotations/instances_train2017.json',
                                       data_prefix=dict(img='train2017/'))),
    val_evaluator=dict(type='CocoMetric', ann_file='data/coco/annotations/instances_val2017.json'),
    model=dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='pretrained/resnet50.pth'))),
    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
    load_from='work_dirs/x/epoch_1.pth')
INPUTS = UserInputs(CONFIG, COCO)
DATASET_SENTENCE = ('file {} does not exist (check the dataset paths data_root, ann_file and data_prefix in '
                    f'config {CONFIG})')


def missing(path):
    return FileNotFoundError(2, 'No such file or directory', path)


def test_config_names_its_checkpoints_and_dataset_paths():
    assert named_paths(COCO) == {
        os.path.abspath(path): role for path, role in [
            ('data/coco', 'dataset'), ('annotations/instances_train2017.json', 'dataset'),
            ('train2017', 'dataset'), ('data/coco/annotations/instances_val2017.json', 'dataset'),
            ('pretrained/resnet50.pth', 'checkpoint'), ('work_dirs/x/epoch_1.pth', 'checkpoint')]}


def test_missing_file_under_data_root_names_the_file():
    assert explain(missing('data/coco/annotations/train.json'), INPUTS) == \
        DATASET_SENTENCE.format('data/coco/annotations/train.json')


def test_missing_file_named_by_absolute_path_is_still_the_users():
    path = os.path.abspath('data/coco/annotations/instances_val2017.json')
    assert explain(missing(path), INPUTS) == DATASET_SENTENCE.format(path)


def test_file_not_found_rewrapped_by_a_builder_still_names_the_file():
    # mmcv 1.x-style build_from_cfg re-raised type(e)(f'class `X` in ...: {e}'), which drops .filename.
    error = FileNotFoundError("class `CocoDataset` in mmdet/datasets/coco.py: [Errno 2] No such file or "
                              "directory: 'data/coco/val.json'")
    assert explain(error, INPUTS) == DATASET_SENTENCE.format('data/coco/val.json')


def test_file_not_found_from_dataloader_worker_names_the_image():
    error = FileNotFoundError("Caught FileNotFoundError in DataLoader worker process 0.\nOriginal Traceback "
                              "(most recent call last):\n  ...\nFileNotFoundError: [Errno 2] No such file or "
                              "directory: 'data/coco/train2017/000001.png'\n")
    assert explain(error, INPUTS) == DATASET_SENTENCE.format('data/coco/train2017/000001.png')


@pytest.mark.parametrize('path', ['work_dirs/x/epoch_1.pth', 'pretrained/resnet50.pth'])
def test_missing_checkpoint_the_config_names(path):
    assert explain(FileNotFoundError(f'{path} can not be found.'), INPUTS) == \
        f'checkpoint file {path} does not exist'


def test_missing_checkpoint_the_config_does_not_name_is_a_bug():
    # The old rule ("ends in .pth") called this the user's mistake.
    assert explain(FileNotFoundError('work_dirs/y/iter_8.pth can not be found.'), INPUTS) is None


@pytest.mark.parametrize('path', ['/etc/ghm_mmdet/settings.json', 'data/cocoa/x.json', 'annotations/x.json'])
def test_missing_path_the_user_did_not_name_is_a_bug(path):
    assert explain(missing(path), INPUTS) is None


def test_missing_path_before_the_config_is_loaded_is_a_bug():
    assert explain(missing('data/coco/annotations/train.json'), UserInputs(CONFIG)) is None
    assert explain(missing('data/coco/annotations/train.json')) is None


def test_empty_data_root_does_not_make_every_path_the_users():
    inputs = UserInputs(CONFIG, dict(dataset=dict(data_root='', ann_file='ann.json'), other=dict(data_root='.')))
    assert explain(missing('ann.json'), inputs) == DATASET_SENTENCE.format('ann.json')
    assert explain(missing('lib/helper.json'), inputs) is None


def test_missing_scontrol_keeps_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # no scontrol here
    with pytest.raises(FileNotFoundError) as info:
        first_slurm_host('node[01-02]')
    assert explain(info.value, INPUTS) is None
    with pytest.raises(FileNotFoundError, match='scontrol'):
        with plain_failures('train.py', CONFIG) as inputs:
            inputs.config = COCO
            first_slurm_host('node[01-02]')


def test_plain_failures_reports_a_missing_dataset_file_once_the_config_is_known(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        with plain_failures('train.py', CONFIG) as inputs:
            inputs.config = COCO
            open('data/coco/annotations/instances_train2017.json')
    assert info.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err == \
        'train.py: error: ' + DATASET_SENTENCE.format('data/coco/annotations/instances_train2017.json') + '\n'


def test_unregistered_type():
    error = KeyError('RetinaHeadd is not in the mmdet::model registry. Please check whether the value of '
                     '`RetinaHeadd` is correct or it was registered as expected. More details can be found '
                     'at https://mmengine.readthedocs.io/')
    assert explain(error, UserInputs(CONFIG)) == (
        "type='RetinaHeadd' in config configs/demo.py is not a registered mmdet::model type (a typo, or a "
        'missing custom_imports?)')


def test_unexpected_argument_with_and_without_build_prefix():
    plain = TypeError("IterBasedTrainLoop.__init__() got an unexpected keyword argument 'max_iter'")
    wrapped = TypeError("class `GHMC` in ghm_mmdet/models/losses/ghm_loss.py: GHMC.__init__() got an "
                        "unexpected keyword argument 'bin'")
    assert explain(plain, UserInputs(CONFIG)) == (
        "IterBasedTrainLoop does not take the argument 'max_iter' given in config configs/demo.py (a typo in "
        'that key?)')
    assert explain(wrapped).startswith("GHMC does not take the argument 'bin' given")


def test_missing_argument():
    error = TypeError("class `GHMR` in x.py: GHMR.__init__() missing 1 required positional argument: 'mu'")
    assert explain(error, UserInputs(CONFIG)) == \
        "GHMR needs the argument(s) 'mu', missing in config configs/demo.py"


def test_refused_checkpoint_rewrapped_by_build_keeps_its_sentence():
    error = UnsafeCheckpointError("class `X` in y.py: refusing to load checkpoint a.pth: it holds ...")
    assert explain(error) == 'refusing to load checkpoint a.pth: it holds ...'


@pytest.mark.parametrize('error', [
    RuntimeError('CUDA out of memory'),
    KeyError('bbox_head'),
    TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
    FileNotFoundError(),
    ValueError('x'),
    ValueError('bins must be an int >= 1, got 0'),
    TypeError('momentum must be a float in [0, 1), got None'),
])
def test_bugs_are_not_explained(error):
    assert explain(error, INPUTS) is None


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
        self.bins = check_bins(bins)


class Head:
    def __init__(self, loss_bins):
        self.loss = Loss(loss_bins)
        raise ValueError('shape mismatch')


class ForeignHead:
    """Someone else's module, checking its argument with a plain ValueError."""

    def __init__(self, num_classes):
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')


def raised(make):
    try:
        make()
    except Exception as error:  # noqa: BLE001
        return error
    raise AssertionError('nothing raised')


def test_our_argument_check_in_a_constructor_names_the_innermost_class():
    error = raised(lambda: Head(loss_bins=0))
    assert isinstance(error, GHMArgumentError)
    assert explain(error, UserInputs(CONFIG)) == 'Loss in config configs/demo.py: bins must be an int >= 1, got 0'


def test_our_type_check_in_a_constructor_is_explained_too():
    error = raised(lambda: Loss(bins=2.5))
    assert isinstance(error, GHMArgumentTypeError)
    assert explain(error) == "Loss: bins must be an int >= 1, got 2.5 of type float"


def test_our_argument_error_survives_a_builder_that_rewraps_it():
    # type(e)(f'class `X` in file: {e}'), as mmcv 1.x's builder did, keeps our type and names the class.
    error = raised(lambda: Loss(bins=0))
    rewrapped = type(error)(f'class `Loss` in tests/apis/test_plain_errors.py: {error}')
    assert type(rewrapped) is GHMArgumentError
    assert explain(rewrapped) == 'Loss: bins must be an int >= 1, got 0'


def test_other_errors_in_constructors_are_not_explained():
    assert explain(raised(lambda: Head(loss_bins=1))) is None


def test_foreign_must_error_in_a_constructor_keeps_its_traceback():
    error = raised(lambda: ForeignHead(num_classes=0))
    assert explain(error, INPUTS) is None
    with pytest.raises(ValueError, match='num_classes must be >= 1'):
        with plain_failures('train.py', CONFIG):
            ForeignHead(num_classes=0)


def test_our_argument_check_outside_a_constructor_is_not_explained():
    # Raised on values computed by code (e.g. a loss's forward on tensors), not written in the config.
    assert explain(raised(lambda: check_bins(0))) is None


def test_loss_built_from_config_with_bins_0_is_one_line(capsys):
    # In-process twin of tests/tools/test_tool_errors.py::test_value_rejected_by_a_loss_argument_check.
    pytest.importorskip('mmdet')
    import ghm_mmdet  # noqa: F401  (registers GHMC in mmdet's MODELS)
    from mmdet.registry import MODELS
    with pytest.raises(SystemExit) as info:
        with plain_failures('train.py', CONFIG):
            MODELS.build(dict(type='GHMC', bins=0))
    assert info.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err == \
        f'train.py: error: GHMC in config {CONFIG}: bins must be an int >= 1, got 0\n'
