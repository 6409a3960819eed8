# The README's two commands: `make demo` (the main job on the built-in Faust synths) and
# `make test`. Each sets up its own virtualenv with the pinned requirements on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all lint bench venv venv-ray clean data heldout heldout-pitch data-dx7 heldout-dx7 data-real pretrained pretrained-data scaling-data real-sounds plugins plugins-install

venv: $(VENV)/.installed

REQUIREMENTS ?= requirements.txt

$(VENV)/.installed: $(REQUIREMENTS) requirements-common.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Ray, for the commands' --ray (docs/scaling.md): only to scale out (CI installs it for the Ray tests)
venv-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install --quiet -r requirements-ray.txt
	touch $@

# the main job on the built-in synths: dataset -> multi-task model -> how it compares with the
# baselines on sounds it never saw -> presets for a test sample and for a sound none of our synths
# made, each refined by searching with the synth in the loop. Every step resumes or is skipped when
# already done. It ends by printing the HTML reports it made.
DEMO_EPOCHS ?= 8
# the training data: no HPSS labels (half the generation time; only test sets use them, and the
# held-out set below keeps them)
DATA_ARGS = --synths va fm modal --n 1000 --no-hpss --out npy_data
HELDOUT = $(PY) data_generation/generate.py --synths va fm modal --presets random --n 120 --seed 77 \
	--split-all test --out npy_heldout
# demo_out/ is the demo's own: --overwrite lets a rerun replace what an older version wrote unrecorded
demo: venv
	$(PY) data_generation/view_parameters.py --list
	$(PY) data_generation/generate.py $(DATA_ARGS)
	$(HELDOUT)
	$(PY) train_multi.py --epochs $(DEMO_EPOCHS) --generative-head flow
	$(PY) experiments/evaluate.py saved_models/vae_multi_64_paper -d npy_data --test-dir npy_heldout \
		--max-samples 90 --out demo_out/heldout --overwrite
	@echo "the shipped pretrained model (saved_models/pretrained: 66,223 sounds of va, fm, modal and dx7 at notes 36-84) on the same sounds:"
	$(PY) experiments/evaluate.py saved_models/pretrained -d npy_data --test-dir npy_heldout \
		--max-samples 90 --baselines none --report-samples 0 --out demo_out/heldout_pretrained --overwrite
	$(PY) run_inference.py -s 0 -a --refine-renders 300 --out demo_out/test_sample
	$(PY) data_generation/demo_sound.py demo_out/pluck.wav --overwrite
	$(PY) run_inference.py --input demo_out/pluck.wav --out demo_out/pluck
	@echo "reports to open in a browser (static files, no server needed):"
	@echo "  demo_out/pluck/report.html          the pluck and each synth's match, refined and one-shot"
	@echo "  demo_out/test_sample/report.html    a test sample and each synth's match"
	@echo "  demo_out/heldout/report/index.html  the evaluation on held-out sounds, best to worst"

# a few thousand samples of the three built-in Faust synths (~1.5 min on 2 cores)
data: venv
	$(PY) data_generation/generate.py $(DATA_ARGS)

# fresh random presets of the same synths with another seed, all in the test split: sounds no model
# trained on npy_data has seen (experiments/configs use it as their test set)
heldout: venv
	$(HELDOUT)

# fresh random presets at notes 40, 52, 64 and 76 (each preset at all four): the pretrained model's
# and the scaling table's held-out sounds (experiments/configs/scaling.json)
heldout-pitch: venv
	$(PY) data_generation/generate.py --synths va fm modal --presets random --n 100 --seed 77 \
		--notes 40,52,64,76 --split-all test --out npy_heldout_pitch

# the DX7 benchmark's data (experiments/configs/dx7_benchmark.json; docs/paper.md): the built-in synths and
# dx7 (its 368 training ROM voices from Debian's hexter, their mutations, random presets), and dx7's held-out
# sounds: the 64 TX7 ROM voices no dataset trains on and 64 fresh random presets, at notes 40, 52, 64 and 76
data-dx7: venv
	$(PY) data_generation/generate.py --synths va fm modal dx7 --n 1000 --no-hpss --out npy_data_dx7

heldout-dx7: venv
	$(PY) data_generation/generate.py --synths dx7 --presets holdout,random --n 128 --seed 77 \
		--notes 40,52,64,76 --split-all test --out npy_heldout_dx7

# real plugins: amsynth's 3,482 human presets and mutations, Calf Monosynth, one Faust synth
data-real: venv
	$(PY) data_generation/generate.py --synths amsynth calf_monosynth va --n 4000 \
		--presets amsynth=human,mutate --presets calf_monosynth=random,mutate --presets va=human,mutate,random \
		--out npy_data_real

# LV2 builds of the built-in synths, from the same .dsp files (Debian: faust g++ lv2-dev libboost-dev,
# and lilv-utils to list them), each checked against the toolkit's renders; plugins-install also
# copies them to ~/.lv2 (or the first LV2_PATH folder). See the README's "Use a match in your DAW".
plugins: venv
	$(PY) data_generation/build_plugins.py --out plugins

plugins-install: venv
	$(PY) data_generation/build_plugins.py --out plugins --install

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports  # the layer contract in pyproject.toml

# the fast tier (a few minutes: run it after every change) and everything (CI runs test-all)
test: venv lint
	$(PY) -m pytest -q -m "not slow"

test-all: venv lint
	$(PY) -m pytest -q --durations=25

# a benchmark, bench/NAME.py (run by hand; prints figures): make bench NAME=search ARGS="--renders 600";
# make bench alone lists them (the same as python -m bench)
bench: venv
	$(PY) -m bench $(NAME) $(ARGS)

clean:
	rm -rf demo_out renders .pytest_cache .ruff_cache

# the shipped model, saved_models/pretrained: 21,000 presets of each of va, fm, modal and dx7 at notes
# 36-84 (one note each; 66,223 training sounds), the multi model trained 7 epochs (the best, 6th, kept), exported
# (float16 weights, the search's start index as 8-bit codes) with a generative (flow) head per synth
# for best of K: 35 MiB. About 19 minutes of data, 72 of training (10 a epoch) and 2 of heads on 2 cores
# (2026-12-08). Writes saved_models/pretrained only when it is not there (remove it first to replace it).
PRETRAINED_DATA ?= npy_pretrained
pretrained: pretrained-data
	$(PY) train_multi.py -d $(PRETRAINED_DATA) --model-dir runs_pretrained --epochs 7 --batch-size 64 --lr 2e-4 \
		--param-weight 10
	$(PY) experiments/export_model.py runs_pretrained/vae_multi_64_paper -d $(PRETRAINED_DATA) \
		--out saved_models/pretrained --index-dtype uint8 --command "make pretrained"
	$(PY) add_generative_head.py saved_models/pretrained --epochs 20 --dtype float16

# its data alone (the real-sound lookup and the DX7 figures look up in it): float16 mels in shards
pretrained-data: venv
	$(PY) data_generation/generate.py --synths va fm modal dx7 --n 21000 --notes 36-84 --one-note --no-hpss \
		--mel-dtype float16 --layout sharded --out $(PRETRAINED_DATA)

# the scaling and pitch experiments' data (experiments/configs/scaling.json, pitch.json): the three
# Faust synths, 21,000 presets each at notes 36-84 (50,043 training sounds; the first shipped model's)
scaling-data: venv
	$(PY) data_generation/generate.py --synths va fm modal --n 21000 --notes 36-84 --one-note --no-hpss \
		--out npy_scaling

# recorded and sampled notes no synth of ours made (apt: sonic-pi-samples fluidsynth timgm6mb-soundfont)
real-sounds: venv
	$(PY) data_generation/real_sounds.py --out real_sounds
