"""sync_stats=True: two gloo ranks holding halves of a batch see the whole batch's gradient density."""
import os

import pytest
import torch

from ghm_mmdet.models.losses import GHMC, GHMR

from gloo_ranks import gloo_group, run_ranks


def batch():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(400, 6, generator=gen) * 3
    labels = torch.randint(0, 7, (400,), generator=gen)
    weight = (torch.rand(400, generator=gen) > 0.1).float()
    deltas = torch.randn(100, 4, generator=gen) * 0.1
    return pred, labels, weight, deltas


def worker(rank, out_dir):
    with gloo_group(rank, 2, out_dir):
        pred, labels, weight, deltas = batch()
        half = slice(rank * 200, (rank + 1) * 200)
        x = pred[half].clone().requires_grad_()
        cls_loss = GHMC(bins=30, momentum=0.75, sync_stats=True)
        reg_loss = GHMR(momentum=0.7, sync_stats=True)
        for _ in range(2):
            x.grad = None
            cls_loss(x, labels[half], weight[half]).backward()
        d = deltas[rank * 50:(rank + 1) * 50]
        reg = reg_loss(d, torch.zeros_like(d), torch.ones_like(d))
        torch.save(dict(grad=x.grad, acc_sum=cls_loss.acc_sum, reg_acc=reg_loss.acc_sum, reg=reg),
                   os.path.join(out_dir, f'rank{rank}.pt'))


@pytest.mark.slow
def test_two_ranks_equal_one_process_on_the_whole_batch(tmp_path):
    run_ranks(worker, args=(str(tmp_path),))
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(2)]

    pred, labels, weight, deltas = batch()
    x = pred.clone().requires_grad_()
    single = GHMC(bins=30, momentum=0.75)
    for _ in range(2):
        x.grad = None
        single(x, labels, weight).backward()
    single_reg = GHMR(momentum=0.7)
    whole_reg = single_reg(deltas, torch.zeros_like(deltas), torch.ones_like(deltas))

    for rank in ranks:
        assert torch.allclose(rank['acc_sum'], single.acc_sum)
        assert torch.allclose(rank['reg_acc'], single_reg.acc_sum)
    # DDP averages gradients over ranks: the average equals the single-process gradient.
    averaged = torch.cat([ranks[0]['grad'], ranks[1]['grad']]) / 2
    assert torch.allclose(averaged, x.grad, rtol=1e-5, atol=1e-9)
    assert torch.allclose((ranks[0]['reg'] + ranks[1]['reg']) / 2, whole_reg, rtol=1e-5)
