"""How far a map or a decision can be trusted.

Maps (Adebayo et al. 2018; Arun et al. 2021: localisation alone is passed by maps that ignore the model):
    baselines.py       maps that know no model: uniform, random, edge (Sobel of the slice)
    models.py          a branch's decision and map as Quantus randomises and perturbs them
    quantus_checks.py  the Quantus 0.6 metrics on one slice: randomisation, faithfulness, robustness, localisation
    map_checks.py      every method and baseline of the global and decision branches over labelled slices: rows
    verdicts.py        the pass rule of each test, written once, and a plain sentence per method and test
    store.py           trust.json / trust.csv in the run folder, keyed by the run's checkpoints and the settings
Decisions:
    conformal.py       a class-conditional (Mondrian) split-conformal prediction set for every slice
    ood.py             the out-of-distribution flag: a slice's distance from the training split to the network and in
                       the image (a conformal threshold each)
    image_check.py     the image's side of it: a lung field, and statistics of the slice as it arrives
    probes.py          inputs that are no chest CT (photographs, a lungless phantom, noise, text)
    scan_call.py       how far a whole scan's call can be trusted: the rule's constant, the flag, another hospital
    calls.py           a run's calls on new slices and scans with those parts (`train predict`)
"""
