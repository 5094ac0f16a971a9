"""``hotcb.state_copy.to_cpu`` copies a plain CPU tensor with ``clone`` (the cheaper call) and
everything else as before, with ``.to("cpu", copy=True)``: every tensor it gives must be what
``.to("cpu", copy=True)`` of the detached tensor gives (type, dtype, shape, strides, conjugate
and negative bits, values), never share storage with the state, and never need a grad."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hotcb.state_copy import to_cpu


def _reference(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


def _check(copy: torch.Tensor, src: torch.Tensor) -> None:
    ref = _reference(src)
    assert type(copy) is type(ref)
    assert copy.dtype == ref.dtype and copy.shape == ref.shape and copy.stride() == ref.stride()
    assert copy.layout == ref.layout and copy.is_conj() == ref.is_conj() and copy.is_neg() == ref.is_neg()
    assert not copy.requires_grad and copy.grad_fn is None
    if copy.layout is torch.strided:
        assert torch.equal(copy.resolve_conj().resolve_neg(), ref.resolve_conj().resolve_neg())
        if src.numel():  # an empty tensor has no storage to share
            assert copy.untyped_storage().data_ptr() != src.untyped_storage().data_ptr()
    else:
        assert torch.equal(copy.to_dense(), ref.to_dense())


def _tensors() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    leaf = torch.randn(4, 3, generator=g, requires_grad=True)
    return [
        base,                                   # contiguous
        base.t(),                               # transposed: strides kept
        base[:, ::2],                           # not dense: a dense copy, as .to gives
        base[2:4],                              # a view into a larger storage
        torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last),
        torch.tensor(3.5),                      # 0-d
        torch.empty(0, 4),                      # empty
        torch.arange(10, dtype=torch.int64),
        torch.ones(3, dtype=torch.bfloat16),
        torch.tensor([True, False]),
        leaf,                                   # needs its grad: cut off it
        leaf * 2,                               # has a grad_fn
        nn.Parameter(torch.randn(3, generator=g)),                       # a subclass
        nn.Parameter(torch.randn(3, generator=g), requires_grad=False),  # a subclass without grad
        torch.randn(3, dtype=torch.complex64, generator=g).conj(),       # conjugate bit
        torch.randn(3, dtype=torch.complex64, generator=g).conj().imag,  # negative bit
        torch.randn(4, 4, generator=g).to_sparse(),                      # not strided
    ]


@pytest.mark.parametrize("i", range(len(_tensors())))
def test_each_tensor_is_copied_as_to_cpu_copies_it(i: int) -> None:
    src = _tensors()[i]
    _check(to_cpu(src), src)
    _check(to_cpu({"t": src})["t"], src)  # a dict's tensor values take the inlined path


def test_a_state_dict_is_copied_whole_and_apart() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "list": [torch.ones(2), (1, "a")]}
    out = to_cpu(state)
    assert isinstance(out["model"], dict) and list(out["model"]) == list(state["model"])
    for k, v in state["model"].items():
        _check(out["model"][k], v)
    for p, s in state["optimizer"]["state"].items():
        assert list(out["optimizer"]["state"][p]) == list(s)
        for k, v in s.items():
            _check(out["optimizer"]["state"][p][k], v)
    assert out["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert out["optimizer"]["param_groups"][0] is not state["optimizer"]["param_groups"][0]
    assert type(out["list"][1]) is tuple and out["list"][1] == (1, "a")
    _check(out["list"][0], state["list"][0])
    before = out["model"]["0.weight"].clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)  # the training step's in-place update leaves the copy alone
    assert torch.equal(out["model"]["0.weight"], before)
