"""Audio-to-preset retrieval (asp/evaluation/retrieval.py): the gallery, ranks and recall@k on known answers."""

import json

import numpy as np
import pytest

from asp.errors import ASPError
from asp.evaluation.retrieval import build_gallery, ranks, recall_at, run_retrieval
from data.encoding import Codec
from data_generation.presets import random_presets
from data_generation.spec import load_spec


def test_the_gallery_holds_each_query_preset_once_then_random_ones():
    spec = load_spec("fm")
    presets = Codec(spec).encode(random_presets(spec, 5, np.random.default_rng(1)))
    queries = np.concatenate([presets, presets[:3]])  # three presets at a second note
    gallery = build_gallery(spec, queries, size=64, seed=2)
    assert gallery.vectors.shape == (64, spec.encoded_size) and gallery.distinct_queries == 5
    assert np.array_equal(gallery.vectors[gallery.truth], queries.astype(np.float32))
    assert gallery.truth[5] == gallery.truth[0]
    again = build_gallery(spec, queries, size=64, seed=2)
    assert np.array_equal(again.vectors, gallery.vectors)  # seeded
    assert not np.array_equal(build_gallery(spec, queries, size=64, seed=3).vectors, gallery.vectors)
    with pytest.raises(ASPError, match="cannot hold the 5 distinct"):
        build_gallery(spec, queries, size=4)


def test_ranks_and_recall_on_known_answers():
    spec = load_spec("fm")
    queries = Codec(spec).encode(random_presets(spec, 20, np.random.default_rng(4)))
    gallery = build_gallery(spec, queries, size=200, seed=0)
    assert np.array_equal(ranks(queries, gallery), np.zeros(20))  # the true preset predicted: first
    assert recall_at(ranks(queries, gallery)) == {1: 1.0, 5: 1.0, 10: 1.0}
    # predicting another query's preset: that one ranks first, the true one after it
    shifted = np.roll(queries, 1, axis=0)
    assert (ranks(shifted, gallery) >= 1).all()
    # a known rank: the prediction is gallery row 7, the truth (row 0) lies farther than row 7 only
    gallery_rows = gallery.vectors
    distance = ((gallery_rows - gallery_rows[7]) ** 2).mean(axis=1)
    expected = int((distance < distance[0]).sum())
    one = type(gallery)(gallery_rows, np.array([0]), 1)
    assert ranks(gallery_rows[7][None], one)[0] == expected
    assert recall_at(np.array([0, 3, 7, 12])) == {1: 0.25, 5: 0.5, 10: 0.75}
    with pytest.raises(ASPError, match="one prediction"):
        ranks(queries[:3], gallery)


@pytest.mark.slow
def test_a_model_is_scored_and_a_foreign_file_kept(tiny_data, tiny_models, tmp_path):
    run = next(tiny_models.glob("vae_multi_8_*"))
    out = tmp_path / "retrieval.json"
    result = run_retrieval(run, tiny_data, out, synth="fm", size=50)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["queries"] >= 1 and set(result["recall_at"]) == {1, 5, 10}
    assert all(0.0 <= v <= 1.0 for v in result["recall_at"].values()) and result["chance"][10] == 0.2
    foreign = tmp_path / "mine.json"
    foreign.write_text('{"mine": 1}')
    with pytest.raises(ASPError, match="no retrieval result"):
        run_retrieval(run, tiny_data, foreign, synth="fm", size=50)
    assert foreign.read_text() == '{"mine": 1}'
