"""Evaluation: how close a model's (and the baselines') presets come to the sounds of a split.

    evaluate.py     evaluate(): predict, render, score every sample; samples.csv, summary.md, presets.npz
    summary.py      the summary's tables (built once for markdown and the page), the comparison line
    run.py          run_evaluation(): what experiments/evaluate.py runs; write_report(): plots and page
    plots.py        LSD box plots, LSD against latent size, LSD per HPSS bin
    results.py      CSV files, the held-out test set check, worker setup, table cell texts
    audibility.py   which parameters a sound reveals, and the parameter-MSE floor the others leave

Nothing is imported here: ``asp.evaluation.results`` and ``summary`` stay light (no TensorFlow),
so the experiment runner checks configs before it loads the network.
"""
