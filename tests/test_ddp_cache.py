"""DDP: every rank passes the feature cache's barrier the same number of times, whoever finds the entry.

Rank 1 starts late, when rank 0 has already computed and written the first entry. A rank that
looked for itself would take that entry without the barrier rank 0 waits at, and the ranks'
collectives would pair up wrongly from then on (in CI: rank 1 read an entry rank 0 had not yet
written and died, and rank 0 waited at a barrier for a peer that was gone).
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, time
from datetime import timedelta
import torch, torch.distributed as dist
from core.runs import feature_cache as fc

dist.init_process_group("gloo", timeout=timedelta(seconds=60))
rank, folder = dist.get_rank(), sys.argv[1]
computed = []
def compute(k):
    computed.append(k)
    time.sleep(1.0)  # rank 1's first look falls after this entry is written, before the next
    return {"x": torch.full((3,), k)}
if rank == 1:
    time.sleep(2.0)
got = [fc.cached(folder, "demo", {"k": k}, lambda k=k: compute(k))["x"].tolist() for k in (1, 2, 3)]
n = torch.tensor([len(computed)])
dist.all_reduce(n)  # a collective after the cache calls: mismatched barriers fail or hang here
assert got == [[1] * 3, [2] * 3, [3] * 3], got
assert computed == ([1, 2, 3] if rank == 0 else []), (rank, computed)
assert n.item() == 3, n
dist.destroy_process_group()
print("ok", rank)
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_late_rank_waits_at_the_same_barriers_and_reads_what_rank0_computed(tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "features")], cwd=ROOT,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=120))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("the ranks hung: their barriers no longer pair up") from None
    failed = [f"rank {r} exited {p.returncode}:\n{err[-2000:]}" for r, (p, (out, err)) in enumerate(zip(procs, outs))
              if p.returncode != 0 or f"ok {r}" not in out]
    assert not failed, "\n".join(failed)
