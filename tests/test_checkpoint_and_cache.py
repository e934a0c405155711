import os
import pickle

import pytest
import torch

from core.runs import feature_cache as fc
from core.runs.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/covid-lab-pwned",))


def test_checkpoint_round_trip(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 2}, tmp_path / "a.pt")
    assert load_checkpoint(tmp_path / "a.pt")["epoch"] == 2


def test_pickle_with_code_is_refused_not_run(tmp_path):
    target = "/tmp/covid-lab-pwned"
    if os.path.exists(target):
        os.remove(target)
    f = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(f)
    assert not os.path.exists(target)
    f.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(f)
    assert not os.path.exists(target)


def test_corrupted_and_missing_checkpoints_are_named(tmp_path):
    f = tmp_path / "c.pt"
    save_checkpoint({"model": {"w": torch.ones(100)}}, f)
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="c.pt"):
        load_checkpoint(f)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    f = tmp_path / "k.pt"
    save_checkpoint({"v": torch.tensor(1)}, f)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint({"v": torch.tensor(2)}, f)
    monkeypatch.undo()
    assert int(load_checkpoint(f)["v"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["k.pt"]  # no temporary file left behind


def test_feature_cache_computes_once_and_rebuilds_a_corrupted_entry(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(5)}

    parts = {"ckpt": "abc", "tau": 0.75}
    assert fc.cached(tmp_path, "maps", parts, compute)["x"].sum() == 10
    assert fc.cached(tmp_path, "maps", parts, compute)["x"].sum() == 10
    assert len(calls) == 1
    fc.cached(tmp_path, "maps", {**parts, "tau": 0.5}, compute)  # another key: recomputed
    assert len(calls) == 2
    payload = next(p for p in tmp_path.glob("maps-*.pt") if fc.key_of(parts) in p.name)
    data = bytearray(payload.read_bytes())
    data[-5] ^= 0xFF
    payload.write_bytes(bytes(data))
    assert fc.load_cached(tmp_path, "maps", parts) is None  # checksum catches it
    assert fc.cached(tmp_path, "maps", parts, compute)["x"].sum() == 10
    assert len(calls) == 3


def test_readers_find_the_runs_own_entry_by_key_not_by_recency(tmp_path):
    one, other = {"tau": 0.75}, {"tau": 0.3}
    fc.save_cached(tmp_path, "crops", one, {"x": torch.zeros(1)})
    assert fc.current(tmp_path, "crops") is None  # saved, but nothing says it is the run's own
    fc.save_cached(tmp_path, "crops", other, {"x": torch.ones(1)})
    fc.remember(tmp_path, "crops", one)
    fc.save_cached(tmp_path, "crops", {"tau": 0.5}, {"x": torch.full((1,), 2.0)})  # written last
    assert fc.current(tmp_path, "crops")["x"].sum() == 0
    assert fc.current(tmp_path, "maps") is None  # never recorded


def test_a_resume_point_restores_weights_optimiser_and_loop_state(tmp_path):
    from core.runs.checkpoint import resume, save_resume_point

    def model_and_opt():
        torch.manual_seed(0)
        m = torch.nn.Linear(3, 1)
        return m, torch.optim.AdamW(m.parameters(), lr=0.1)

    m, opt = model_and_opt()
    m(torch.ones(2, 3)).sum().backward()
    opt.step()
    save_resume_point(tmp_path / "last.pt", m, opt, {"epoch": 3, "history": [{"loss": 0.5}]})
    m2, opt2 = model_and_opt()
    assert resume(tmp_path / "none.pt", m2, opt2) is None  # a fresh start leaves the model as built
    assert not torch.equal(m2.weight, m.weight)
    assert resume(tmp_path / "last.pt", m2, opt2) == {"epoch": 3, "history": [{"loss": 0.5}]}
    assert torch.equal(m2.weight, m.weight)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
