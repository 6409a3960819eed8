"""Reproducing the paper's evaluation: metrics, evaluation, experiment configs and their runner."""
