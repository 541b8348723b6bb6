"""GHMStatsHook on real GHM loss modules in a stand-in runner: what it records, where it writes it, and
each warning it gives before GHM diverges."""
import itertools
import logging
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import HOOKS
from mmengine.logging import MessageHub
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import LogProcessor
from torch import nn

from ghm_mmdet.engine import GHMStatsHook, find_ghm_losses, read_snapshot
from ghm_mmdet.models.losses import GHMC, GHMR

CLS = 'ghm_c/bbox_head.loss_cls'
REG = 'ghm_r/bbox_head.loss_bbox'
_names = itertools.count()


class TinyDetector(nn.Module):
    def __init__(self, loss_cls=None, loss_bbox=None):
        super().__init__()
        self.bbox_head = nn.Module()
        self.bbox_head.loss_cls = loss_cls if loss_cls is not None else GHMC(bins=30, momentum=0.75)
        self.bbox_head.loss_bbox = loss_bbox if loss_bbox is not None else GHMR(mu=0.02, bins=10,
                                                                                 momentum=0.7)


def stand_in_runner(model, optim_wrapper=None, visualizer=None, log_processor=None):
    name = f'ghm-stats-test-{next(_names)}'
    return SimpleNamespace(
        model=model, iter=0, max_iters=100, _train_loop=None, hooks=[],
        message_hub=MessageHub(name), logger=logging.getLogger(name),
        visualizer=visualizer or SimpleNamespace(get_backend=lambda name: None),
        optim_wrapper=optim_wrapper, log_processor=log_processor or LogProcessor(by_epoch=False))


def run_iteration(hook, runner, step, calls=lambda: None):
    """One training iteration (1-based ``step``) with ``calls`` as the model's loss calls."""
    runner.iter = step - 1
    hook.before_train_iter(runner, batch_idx=step - 1)
    calls()
    hook.after_train_iter(runner, batch_idx=step - 1)


def cls_batch(num=300, num_classes=5, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, num_classes, generator=gen) * scale
    labels = torch.randint(0, num_classes + 1, (num,), generator=gen)
    label_weight = (torch.rand(num, generator=gen) > 0.2).float()
    return logits, labels, label_weight


def reg_batch(num=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.randn(num, 4, generator=gen) * 0.05
    target = torch.randn(num, 4, generator=gen) * 0.05
    weight = (torch.rand(num, 4, generator=gen) > 0.3).float()
    return pred, target, weight


def call_both(model, seed=0, num=300):
    head = model.bbox_head
    logits, labels, label_weight = cls_batch(num=num, seed=seed)
    head.loss_cls(logits, labels, label_weight)
    head.loss_bbox(*reg_batch(seed=seed))


def scalar(runner, key):
    return runner.message_hub.get_scalar(f'train/{key}').current()


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith('GHMStatsHook:')]


# ---------------------------------------------------------------- construction and discovery

def test_config_builds_the_hook_from_mmdets_registry():
    hook = HOOKS.build(dict(type='GHMStatsHook', interval=50))
    assert isinstance(hook, GHMStatsHook) and hook.interval == 50 and hook.collapse_intervals == 3


@pytest.mark.parametrize('kwargs, message', [
    (dict(interval=0), 'interval must be an int >= 1, got 0'),
    (dict(interval=2.5), 'interval must be an int >= 1, got 2.5'),
    (dict(collapse_intervals=0), 'collapse_intervals must be an int >= 1, got 0'),
    (dict(collapse_share=1.5), r'collapse_share must be a number in \(0, 1\], got 1.5'),
])
def test_bad_arguments_are_named(kwargs, message):
    from ghm_mmdet.core import GHMArgumentError
    with pytest.raises(GHMArgumentError, match=message):  # the tools print it as one line
        GHMStatsHook(**kwargs)


def test_finds_the_losses_through_a_model_wrapper():
    model = TinyDetector()
    wrapped = nn.DataParallel(model)  # registered as a model wrapper by mmengine, as DDP is
    found = find_ghm_losses(wrapped)
    assert [path for path, _ in found] == ['bbox_head.loss_cls', 'bbox_head.loss_bbox']
    assert found[0][1] is model.bbox_head.loss_cls


# ---------------------------------------------------------------- the values

@pytest.mark.parametrize('kind', ['ghmc_labels', 'ghmc_binary_targets', 'ghmc_softmax', 'ghmr'])
def test_counts_sum_to_n_and_beta_times_counts_is_n_with_momentum_0(kind):
    logits, labels, label_weight = cls_batch()
    if kind == 'ghmr':
        loss = GHMR(mu=0.02, bins=10)
        pred, target, weight = reg_batch()
        loss(pred, target, weight)
        expected_n = float((weight > 0).sum())
    elif kind == 'ghmc_softmax':
        loss = GHMC(bins=30, use_sigmoid=False)
        background = torch.zeros(len(logits), 1)
        loss(torch.cat([logits, background], 1), labels, label_weight)  # C + 1 outputs, as BBoxHead's
        expected_n = float((label_weight > 0).sum())  # one entry per sample
    else:
        loss = GHMC(bins=30)
        if kind == 'ghmc_labels':
            loss(logits, labels, label_weight)
        else:
            targets = F.one_hot(labels, logits.shape[1] + 1)[:, :-1].float()
            loss(logits, targets, label_weight[:, None].expand_as(logits))
        expected_n = float((label_weight > 0).sum()) * logits.shape[1]
    snapshot = read_snapshot(loss)
    assert len(snapshot.counts) == loss.bins
    assert snapshot.num_valid == expected_n
    assert sum(snapshot.counts) == pytest.approx(snapshot.num_valid, abs=0)
    assert sum(b * c for b, c in zip(snapshot.beta, snapshot.counts)) == pytest.approx(snapshot.num_valid,
                                                                                     rel=1e-9)
    assert all(b == 0 for b, c in zip(snapshot.beta, snapshot.counts) if c == 0)
    assert snapshot.density == snapshot.counts  # momentum 0: the density is this call's histogram
    assert snapshot.non_empty_regions == sum(c > 0 for c in snapshot.counts)


@pytest.mark.parametrize('loss', [GHMC(bins=30, momentum=0.75), GHMC(bins=10, momentum=0.75, warm_start=True),
                                  GHMC(bins=30, sync_stats=True), GHMR(momentum=0.7, warm_start=True)],
                         ids=['moving_average', 'warm_start', 'sync_stats_one_process', 'ghmr_warm_start'])
def test_variants_report_a_histogram_of_n_and_their_moving_average(loss):
    for seed in range(3):
        if isinstance(loss, GHMR):
            pred, target, weight = reg_batch(seed=seed)
            loss(pred, target, weight)
            expected_n = float((weight > 0).sum())
        else:
            logits, labels, label_weight = cls_batch(seed=seed)
            loss(logits, labels, label_weight)
            expected_n = float((label_weight > 0).sum()) * logits.shape[1]
    snapshot = read_snapshot(loss)
    assert snapshot.num_valid == expected_n == sum(snapshot.counts)
    if hasattr(loss, 'acc_sum'):
        assert snapshot.acc_sum == tuple(loss.acc_sum.double().tolist())
        if not loss.warm_start:
            assert snapshot.density == pytest.approx(snapshot.acc_sum)
    assert all(map(math.isfinite, (*snapshot.density, snapshot.loss))) and snapshot.max_beta > 0


def test_loss_shares_equal_an_independent_computation():
    loss = GHMC(bins=30)
    model = TinyDetector(loss_cls=loss)
    logits, labels, label_weight = cls_batch(num=400, scale=4.0)
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    run_iteration(hook, runner, 1, lambda: loss(logits, labels, label_weight))

    targets = F.one_hot(labels, 6)[:, :-1].float()
    valid = (label_weight > 0)[:, None].expand_as(logits)
    g = (logits.sigmoid() - targets).abs()[valid]
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')[valid].double()
    region = torch.bucketize(g, loss.edges[1:], right=True)
    counts = torch.bincount(region, minlength=30).double()
    beta = (g.numel() / (counts * (counts > 0).sum()))[region]
    weighted = beta * bce
    assert scalar(runner, f'{CLS}/easy_loss_share') == pytest.approx(
        float(weighted[g < 0.1].sum() / weighted.sum()), rel=1e-5)
    assert scalar(runner, f'{CLS}/outlier_loss_share') == pytest.approx(
        float(weighted[g > 0.9].sum() / weighted.sum()), rel=1e-5)
    assert scalar(runner, f'{CLS}/num_valid') == g.numel()


# ---------------------------------------------------------------- when and where it writes

def test_records_every_interval_and_asks_for_loss_shares_only_then():
    model = TinyDetector()
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=2)
    hook.before_train(runner)
    flags = []
    model.bbox_head.loss_cls.register_forward_pre_hook(lambda m, args: flags.append(m.record_loss_shares))

    run_iteration(hook, runner, 1, lambda: call_both(model))
    assert f'train/{CLS}/num_valid' not in runner.message_hub.log_scalars
    run_iteration(hook, runner, 2, lambda: call_both(model))
    assert flags == [False, True]
    assert model.bbox_head.loss_cls.record_loss_shares is False
    keys = {key for key in runner.message_hub.log_scalars if key.startswith('train/ghm_')}
    common = {'num_valid', 'non_empty_regions', 'largest_region_share', 'max_beta', 'loss'}
    assert keys == ({f'train/{CLS}/{name}' for name in common | {'easy_loss_share', 'outlier_loss_share'}}
                    | {f'train/{REG}/{name}' for name in common})
    loss_cls = model.bbox_head.loss_cls.last_stats
    assert scalar(runner, f'{CLS}/num_valid') == float(loss_cls['num_valid'])
    assert scalar(runner, f'{CLS}/loss') == pytest.approx(float(loss_cls['loss']))
    assert 0 <= scalar(runner, f'{CLS}/easy_loss_share') <= 1


def test_a_loss_not_called_in_a_recorded_iteration_is_not_reported():
    model = TinyDetector()
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=2)
    hook.before_train(runner)
    run_iteration(hook, runner, 1, lambda: call_both(model))
    logits, labels, label_weight = cls_batch()
    run_iteration(hook, runner, 2, lambda: model.bbox_head.loss_cls(logits, labels, label_weight))
    assert f'train/{CLS}/num_valid' in runner.message_hub.log_scalars
    assert f'train/{REG}/num_valid' not in runner.message_hub.log_scalars


def test_the_log_line_shows_the_latest_record_not_a_mean_over_records():
    # The module paths contain 'loss', which LogProcessor's default mean_pattern averages over
    # window_size updates: for these keys, records interval iterations apart.
    model = TinyDetector()
    processor = LogProcessor(by_epoch=False, window_size=10)
    runner = stand_in_runner(model, log_processor=processor)
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    run_iteration(hook, runner, 1, lambda: call_both(model, seed=0, num=300))
    run_iteration(hook, runner, 2, lambda: call_both(model, seed=1, num=200))
    latest = float(model.bbox_head.loss_cls.last_stats['num_valid'])
    first = runner.message_hub.get_scalar(f'train/{CLS}/num_valid').data[0][0]
    assert first != latest
    tag, log_str = processor.get_log_after_iter(runner, 1, 'train')
    assert tag[f'{CLS}/num_valid'] == latest
    assert f'{CLS}/num_valid: {latest:.4f}' in log_str
    assert f'{REG}/non_empty_regions: ' in log_str


def test_a_tuple_custom_cfg_from_a_config_is_extended_as_a_new_list():
    """A config may give log_processor=dict(custom_cfg=(...)) as a tuple; the user's entries stay, in a list
    the hook owns, and the user's tuple is left as it was."""
    user_cfg = (dict(data_src='time', method_name='mean', window_size=20),)
    processor = LogProcessor(by_epoch=False, window_size=10, custom_cfg=user_cfg)
    model = TinyDetector()
    runner = stand_in_runner(model, log_processor=processor)
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    run_iteration(hook, runner, 1, lambda: call_both(model, seed=0, num=300))
    run_iteration(hook, runner, 2, lambda: call_both(model, seed=1, num=200))
    assert user_cfg == (dict(data_src='time', method_name='mean', window_size=20),)
    assert processor.custom_cfg[0] == user_cfg[0]
    assert dict(data_src=f'{CLS}/num_valid', method_name='mean', window_size=1) in processor.custom_cfg
    tag, _ = processor.get_log_after_iter(runner, 1, 'train')
    assert tag[f'{CLS}/num_valid'] == float(model.bbox_head.loss_cls.last_stats['num_valid'])


def test_histograms_per_unit_region_reach_tensorboard(tmp_path):
    from mmengine.visualization import Visualizer
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = TinyDetector()
    visualizer = Visualizer(name=f'ghm-stats-tb-{next(_names)}', save_dir=str(tmp_path),
                            vis_backends=[dict(type='TensorboardVisBackend')])
    runner = stand_in_runner(model, visualizer=visualizer)
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    run_iteration(hook, runner, 3, lambda: call_both(model))
    snapshot = read_snapshot(model.bbox_head.loss_cls)
    visualizer.get_backend('TensorboardVisBackend').experiment.flush()

    events = EventAccumulator(str(tmp_path / 'vis_data'), size_guidance={'histograms': 0})
    events.Reload()
    expected = {f'{CLS}/counts', f'{CLS}/density', f'{CLS}/beta', f'{REG}/counts'}
    assert expected <= set(events.Tags()['histograms'])
    [counts] = events.Histograms(f'{CLS}/counts')
    assert counts.step == 3
    histogram = counts.histogram_value
    assert list(histogram.bucket) == list(snapshot.counts)
    assert histogram.num == sum(histogram.bucket) == snapshot.num_valid
    edges = model.bbox_head.loss_cls.edges.tolist()
    assert list(histogram.bucket_limit) == pytest.approx(edges[1:-1] + [1.0])
    assert (histogram.min, histogram.max) == (0.0, 1.0)
    [beta] = events.Histograms(f'{CLS}/beta')
    assert list(beta.histogram_value.bucket) == pytest.approx(snapshot.beta)


# ---------------------------------------------------------------- the heads

def retina_head(head_type):
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmengine.structures import InstanceData

    init_default_scope('mmdet')
    torch.manual_seed(0)
    head = MODELS.build(dict(
        type=head_type, num_classes=4, in_channels=8, stacked_convs=1, feat_channels=8,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                              ratios=[1.0], strides=[8, 16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type='GHMC', bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='GHMR', mu=0.02, bins=10, momentum=0.7, loss_weight=10.0),
        train_cfg=ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                           min_pos_iou=0, ignore_iof_thr=-1),
                             sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
                             debug=False)))
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64))] * 2
    gts = []
    for _ in range(2):
        gt = InstanceData()
        gt.bboxes = torch.tensor([[4.0, 4.0, 30.0, 30.0], [30.0, 20.0, 60.0, 44.0]])
        gt.labels = torch.tensor([1, 3])
        gts.append(gt)
    return head, feats, gts, metas


@pytest.mark.parametrize('head_type', ['RetinaHead', 'GHMRetinaHead'])
def test_heads_report_their_last_loss_call(head_type):
    head, feats, gts, metas = retina_head(head_type)
    model = nn.Module()
    model.bbox_head = head
    seen = []
    head.loss_cls.register_forward_hook(lambda m, args, out: seen.append(m.last_stats['counts'].clone()))
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    run_iteration(hook, runner, 1, lambda: head.loss_by_feat(*head(feats), gts, metas))
    assert len(seen) == (2 if head_type == 'RetinaHead' else 1)  # two FPN levels, or one whole-batch call
    assert scalar(runner, f'{CLS}/num_valid') == float(seen[-1].sum())
    if head_type == 'GHMRetinaHead':
        anchors, valid = head.get_anchors([f.shape[-2:] for f in feats], metas, device='cpu')
        label_weights = head.get_targets(anchors, valid, gts, metas)[1]
        assert scalar(runner, f'{CLS}/num_valid') == float(torch.cat(label_weights, 1).gt(0).sum()) * 4


# ---------------------------------------------------------------- warnings

def crafted_stats(counts, beta=None, loss=1.0, density=None):
    counts = torch.tensor(counts, dtype=torch.float64)
    total = counts.sum()
    if beta is None:
        beta = torch.where(counts > 0, total / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
    return dict(counts=counts, num_valid=total, density=counts if density is None else density,
                beta=torch.as_tensor(beta, dtype=torch.float64), loss=torch.tensor(loss))


def set_stats(module, stats):
    return lambda: setattr(module, 'last_stats', stats)


ADVICE_WORDS = ('warm-up', 'lower learning rate', 'momentum', 'more bins', 'clip_grad')


def assert_one_warning(caplog, tag, words):
    messages = warnings_of(caplog)
    assert len(messages) == 1, messages
    assert messages[0].startswith(f'GHMStatsHook: {tag} at iteration ')
    for word in (*words, *ADVICE_WORDS):
        assert word in messages[0], (word, messages[0])


def test_warns_once_when_the_loss_becomes_non_finite(caplog):
    model = TinyDetector(loss_cls=GHMC(bins=4))
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    loss_cls = model.bbox_head.loss_cls
    run_iteration(hook, runner, 1, set_stats(loss_cls, crafted_stats([5, 3, 0, 2])))
    assert warnings_of(caplog) == []
    for step in (2, 3):
        run_iteration(hook, runner, step, set_stats(loss_cls, crafted_stats([5, 3, 0, 2], loss=float('nan'))))
    assert_one_warning(caplog, CLS, ['the loss is not finite (nan)'])


def test_warns_when_acc_sum_becomes_non_finite(caplog):
    model = TinyDetector(loss_bbox=GHMR(bins=4, momentum=0.7))
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    loss_bbox = model.bbox_head.loss_bbox
    loss_bbox.acc_sum.copy_(torch.tensor([1.0, float('inf'), 2.0, 0.0]))
    run_iteration(hook, runner, 1, set_stats(loss_bbox, crafted_stats([5, 3, 0, 2])))
    assert_one_warning(caplog, REG, ['the moving-average density acc_sum is not finite (1, inf, 2, 0)'])


def test_warns_when_one_region_holds_the_entries_for_collapse_intervals_records(caplog):
    # Real calls: every logit far below 0 on background labels puts every entry in the first region.
    model = TinyDetector()
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=5)
    hook.before_train(runner)
    loss_cls = model.bbox_head.loss_cls
    logits = torch.full((200, 5), -12.0)
    labels = torch.full((200,), 5)

    def easy_batch():
        loss_cls(logits, labels)

    for record in (1, 2):
        run_iteration(hook, runner, 5 * record, easy_batch)
    assert scalar(runner, f'{CLS}/largest_region_share') == 1.0
    assert warnings_of(caplog) == []  # two records in a row: not yet
    run_iteration(hook, runner, 15, easy_batch)
    assert_one_warning(caplog, CLS, ['collapsed', '100.00%', '3 records in a row'])
    run_iteration(hook, runner, 20, easy_batch)
    assert len(warnings_of(caplog)) == 1  # once per condition and loss


def test_collapse_count_restarts_when_the_density_spreads_again(caplog):
    model = TinyDetector(loss_cls=GHMC(bins=4))
    runner = stand_in_runner(model)
    hook = GHMStatsHook(interval=1, collapse_intervals=2)
    hook.before_train(runner)
    loss_cls = model.bbox_head.loss_cls
    collapsed, spread = crafted_stats([995, 5, 0, 0]), crafted_stats([980, 20, 0, 0])
    for step, stats in enumerate([collapsed, spread, collapsed, spread, collapsed], start=1):
        run_iteration(hook, runner, step, set_stats(loss_cls, stats))
    assert warnings_of(caplog) == []
    run_iteration(hook, runner, 6, set_stats(loss_cls, collapsed))
    assert_one_warning(caplog, CLS, ['collapsed', '99.50%'])


def test_warns_when_beta_leaves_the_fp16_range_under_amp_only(caplog):
    large_beta = crafted_stats([99990, 10, 0, 0], beta=[0.5, 7e4, 0.0, 0.0])
    parameter = nn.Parameter(torch.zeros(1))
    plain = OptimWrapper(torch.optim.SGD([parameter], lr=0.1))
    for optim_wrapper, warned in ((plain, False), (AmpOptimWrapper.__new__(AmpOptimWrapper), True)):
        caplog.clear()
        model = TinyDetector(loss_cls=GHMC(bins=4))
        runner = stand_in_runner(model, optim_wrapper=optim_wrapper)
        hook = GHMStatsHook(interval=1)
        hook.before_train(runner)
        run_iteration(hook, runner, 1, set_stats(model.bbox_head.loss_cls, large_beta))
        assert scalar(runner, f'{CLS}/max_beta') == 7e4
        if warned:
            assert_one_warning(caplog, CLS, ['70000', '65504', 'AMP'])
        else:
            assert warnings_of(caplog) == []


def test_a_model_without_ghm_losses_is_reported_and_left_alone(caplog):
    runner = stand_in_runner(nn.Sequential(nn.Linear(2, 2)))
    hook = GHMStatsHook(interval=1)
    hook.before_train(runner)
    run_iteration(hook, runner, 1)
    assert warnings_of(caplog) == ['GHMStatsHook: the model has no GHM loss (GHMC or GHMR); nothing will be '
                                   'recorded']
