"""`python -m train gpu-run`'s parts (the command itself is train/gpu_run.py): plan.py (the jobs, their
order, their estimates and the budget rules), measure.py (step times, GPU utilisation), warm.py (every
slice decoded once, up front), machine.py (the pack, the imports and the device, checked before any work),
state.py (what the outputs are written from), runner.py (the jobs run against the budget) and outputs.py
(the tables, the plan, the timings and summary.md; the files worth bringing back)."""
