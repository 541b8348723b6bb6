"""benchmarks/ghm_diagnosis.py: each loss term's gradient norm and GHMStatsHook's statistics of a finished run."""
import json
import math

import pytest
import torch

from benchmarks import evidence, ghm_diagnosis


def test_gradient_norms_of_each_term_and_of_their_sum_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    unused = torch.zeros(3, requires_grad=True)
    terms = ghm_diagnosis.loss_terms({'loss_a': 3 * w.sum(), 'loss_b': [w[0] ** 2, w[1] ** 2],
                                      'acc': torch.tensor(80.0)})
    assert sorted(terms) == ['loss_a', 'loss_b']  # 'acc' is logged, not summed, by parse_losses
    norms = ghm_diagnosis.term_gradient_norms(terms, [w, unused])
    # d(3 sum w) = (3, 3); d(w0² + w1²) = (2, 4); their sum (5, 7); the unused parameter adds nothing.
    assert norms['loss_a'] == pytest.approx(math.sqrt(18))
    assert norms['loss_b'] == pytest.approx(math.sqrt(20))
    assert norms['total'] == pytest.approx(math.sqrt(74))


def test_a_loss_dict_without_loss_terms_is_refused_by_name():
    with pytest.raises(ValueError, match=r"no loss term among the keys \['acc'\]"):
        ghm_diagnosis.loss_terms({'acc': torch.tensor(1.0)})


def test_warning_conditions_of_one_snapshot():
    healthy = dict(loss=0.5, largest_region_share=0.4)
    assert ghm_diagnosis.ghm_warnings(healthy, [1.0, 2.0], 0.99) == []
    assert ghm_diagnosis.ghm_warnings(dict(healthy, largest_region_share=0.995), [1.0], 0.99) == ['collapse']
    assert ghm_diagnosis.ghm_warnings(dict(healthy, loss=math.nan), [1.0], 0.99) == ['non-finite']
    assert ghm_diagnosis.ghm_warnings(healthy, [1.0, math.inf], 0.99) == ['non-finite']


def test_a_directory_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="run_dir .*seed3'.*no config"):
        ghm_diagnosis.run_files(tmp_path / 'seed3')
    (tmp_path / 'seed3').mkdir()
    (tmp_path / 'seed3.py').write_text('')
    with pytest.raises(FileNotFoundError, match='no last_checkpoint file'):
        ghm_diagnosis.run_files(tmp_path / 'seed3')


@pytest.mark.slow
def test_the_untrained_model_is_initialised_as_a_training_starts(tmp_path, monkeypatch):
    """Without a checkpoint, the weights are init_weights()'s (FCOS's classifier bias its prior,
    -log((1 - 0.01) / 0.01)), not the bare modules' defaults; with one, the checkpoint's."""
    monkeypatch.chdir(tmp_path)
    cfg = evidence.build_config(evidence.STUDIES['heads'].setting('fcos_ghmc'), seed=0, iters=10, small_data=True)
    import ghm_mmdet  # noqa: F401
    model = ghm_diagnosis.build_model(cfg)
    bias = model.bbox_head.conv_cls.bias.detach()
    assert torch.allclose(bias, torch.full_like(bias, -math.log(99)))
    torch.nn.init.zeros_(model.bbox_head.conv_cls.bias)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'w.pth')
    loaded = ghm_diagnosis.build_model(cfg, tmp_path / 'w.pth')
    assert torch.equal(loaded.bbox_head.conv_cls.bias.detach(), torch.zeros_like(bias))


def test_end_to_end_matches_mmengines_gradient_norm(tmp_path, monkeypatch):
    """A run directory laid out as evidence.py leaves it, with the untrained weights as its checkpoint: the
    total gradient norm equals the one mmengine's own path (parse_losses, backward, clip_grad_norm_) gives
    on the same weights and batch, the start and end states agree, and each GHM snapshot's counts add up to N."""
    from mmdet.registry import MODELS
    from mmengine.runner import Runner, set_random_seed

    monkeypatch.chdir(tmp_path)  # the small set is generated under data/
    setting = evidence.STUDIES['heads'].setting('fcos_ghmc')
    cfg = evidence.build_config(setting, seed=0, iters=10, small_data=True)
    run_dir = tmp_path / 'heads' / 'fcos_ghmc' / 'seed0'
    run_dir.mkdir(parents=True)
    run_dir.with_suffix('.py').write_text(cfg.pretty_text)
    import ghm_mmdet  # noqa: F401
    import ghm_mmdet.datasets  # noqa: F401
    set_random_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()  # the state mmengine's Runner starts training from
    torch.save({'state_dict': model.state_dict()}, run_dir / 'iter_10.pth')
    (run_dir / 'last_checkpoint').write_text(str(run_dir / 'iter_10.pth'))

    out = tmp_path / 'diagnosis.json'
    ghm_diagnosis.main([str(run_dir), '--batches', '1', '--out', str(out)])
    result = json.loads(out.read_text())
    run = result['runs'][0]
    assert (run['setting'], run['seed'], run['clip_max_norm']) == ('fcos_ghmc', 0, 35)
    start, end = run['states']['start']['batches'][0], run['states']['end']['batches'][0]
    assert start == end  # the checkpoint holds the initialised weights the start state is built with
    # init_weights ran: FCOS's classifier bias is its prior, -log((1 - 0.01) / 0.01).
    assert dict(model.bbox_head.conv_cls.named_parameters())['bias'][0].item() == pytest.approx(-math.log(99),
                                                                                               rel=1e-6)
    ghm = end['ghm']['ghm_c/bbox_head.loss_cls']
    assert sum(ghm['counts']) == ghm['num_valid'] > 0
    # The prior (p = 0.01, so g = 0.01 for every negative) puts the entries in the first region: flagged.
    assert ghm['largest_region_share'] >= ghm_diagnosis.COLLAPSE_SHARE and ghm['warnings'] == ['collapse']
    assert set(end['loss']) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    assert out.with_suffix('.md').read_text().count('`fcos_ghmc` seed 0') == 4

    set_random_seed(0)  # as the script does before each state: the same weights and the same batch
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(run_dir / 'iter_10.pth')['state_dict'])
    model.train()
    loader = Runner.build_dataloader(dict(cfg.train_dataloader, num_workers=0, persistent_workers=False), seed=0)
    data = model.data_preprocessor(next(iter(loader)), training=True)
    loss, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
    loss.backward()
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
    assert end['grad_norm']['total'] == pytest.approx(float(expected), rel=1e-4)  # float32 sums in another order
    assert sum(end['loss'].values()) == pytest.approx(float(loss), rel=1e-6)
