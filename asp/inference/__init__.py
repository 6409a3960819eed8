"""Inference: a test sample or any sound -> a preset for each synth, rendered and compared.

The model is built and loaded once (``Matcher``); each target (a test sample or a wav file) is
written to its own output folder, assembled in a temp folder and renamed into place, so a run that
fails leaves nothing partial behind. An existing output folder is replaced only when this tool made
it (its ``match.json`` says so and it holds nothing else than what a match writes); any other
existing folder is refused, never deleted. ``report.html`` (``asp.report``) in the same folder plays
the target and every match, with their mel spectrograms, distances and preset files.

With a search budget (``refine``), the closest synths' one-shot presets are refined by searching
with the synth in the loop (``asp.search``), from the network's preset and the nearest training
presets; the refined preset is written next to the one-shot one (``<synth>.refined.*``).
"""

from asp.inference.matcher import Matcher
from asp.inference.outputs import SUMMARY, check_output_folder, plot_comparison, write_preset_outputs
from asp.inference.target import Target

__all__ = ["SUMMARY", "Matcher", "Target", "check_output_folder", "plot_comparison", "write_preset_outputs"]
