"""tools/train.py then tools/test.py on the demo config: a checkpoint, a bbox mAP and a results file."""
import json
import pickle

import pytest

from tool_runs import last_lines

pytestmark = [pytest.mark.slow, pytest.mark.compat]

TEST_IMAGES = 16


def test_test_py_on_trained_checkpoint_gives_bbox_map_and_results_file(tools, reference_run, tmp_path):
    checkpoint = reference_run.checkpoint(8)
    assert checkpoint.is_file()
    results = tmp_path / 'results.pkl'
    run = tools.test(
        checkpoint,
        # A few iterations from scratch score nothing above mmdet's 0.05, and an empty result has no mAP.
        'model.test_cfg.score_thr=0.0', 'model.test_cfg.nms_pre=100', 'model.test_cfg.max_per_img=20',
        f'test_dataloader.dataset.indices={TEST_IMAGES}',
        args=['--work-dir', str(tmp_path / 'work'), '--out', str(results)])
    assert run.returncode == 0, last_lines(run.output)

    metrics_files = list((tmp_path / 'work').glob('*/*.json'))
    assert len(metrics_files) == 1, metrics_files
    metrics = json.loads(metrics_files[0].read_text())
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
    assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0

    with open(results, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == TEST_IMAGES
    first = predictions[0]['pred_instances']
    assert first['bboxes'].shape[1] == 4
    assert 0 < len(first['scores']) <= 20
    assert len(first['labels']) == len(first['scores'])

