"""HTML reports (asp.report): what each page plays, shows and links (every file there, by a relative
link), a folder's index, an evaluation's bounded audio, and the pages in a real headless browser."""

import json
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")  # Debian's chromium and chromium-driver


class Links(HTMLParser):
    """Every audio/img src and a href of a page: {"audio": [...], "img": [...], "a": [...]}."""

    def __init__(self, path: Path):
        super().__init__()
        self.found = {"audio": [], "img": [], "a": [], "script": []}
        self.feed(Path(path).read_text())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name, key in (("audio", "src"), ("img", "src"), ("a", "href"), ("script", "src")):
            if tag == name and attrs.get(key) is not None:
                self.found[name].append(attrs[key])


def check_links(page: Path) -> dict:
    """Asserts that every link of ``page`` is relative and names a file beside it (anchors aside);
    returns the page's links."""
    found = Links(page).found
    assert not found["script"], "no script files: the page is self-contained"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # no CDN, nothing from the internet
    for kind, links in found.items():
        for link in links:
            if link.startswith("#"):
                assert f'id="{link[1:]}"' in text, link
                continue
            assert "://" not in link and not link.startswith("/"), f"{kind} {link} is not relative"
            assert (page.parent / unquote(link)).is_file(), f"{page.name}: {kind} {link} does not exist"
    return found


def run_inference(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "run_inference.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def matches(tiny_data, tiny_models, tmp_path_factory):
    """run_inference.py on a folder of two sounds (one named with a space and a #), the closest
    synth of each refined: the --out folder and the run's stdout."""
    root = tmp_path_factory.mktemp("reports")
    sounds = root / "sounds"
    sounds.mkdir()
    t = np.arange(44100) / 44100
    for name, freq in (("low tone #1.wav", 110.0), ("high.wav", 880.0)):
        sf.write(sounds / name, 0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-3 * t), 44100)
    args = ("-md", str(tiny_models), "-dd", str(tiny_data), "-l", "8", "--input", str(sounds), "--note", "60")
    search = ("--refine-renders", "12", "--refine-synths", "1", "--refine-starts", "1", "--workers", "1")
    res = run_inference(*args, *search, "--out", str(root / "matches"))
    assert res.returncode == 0, res.stderr[-2000:]
    return root / "matches", res.stdout


@pytest.fixture(scope="module")
def evaluation(tiny_data, tiny_models, tmp_path_factory):
    """An evaluation of 8 training sounds (multi, mean, nearest) and its report with 3 of them."""
    from asp.evaluation.evaluate import evaluate
    from asp.evaluation.run import write_report

    out = tmp_path_factory.mktemp("evaluation") / "ev"
    kw = dict(split="train", baselines=("mean", "nearest"), max_samples=8, workers=1, progress=False)
    (run_dir,) = tiny_models.glob("vae_multi_*")
    rows = evaluate(run_dir, tiny_data, out, **kw)
    page = write_report(out, rows, report_samples=3, title="tiny evaluation", progress=False)
    return out, rows, page


@pytest.mark.slow
def test_match_report_plays_the_target_and_every_match(matches):
    root, stdout = matches
    for name in ("low tone #1", "high"):
        folder = root / name
        page = folder / "report.html"
        assert f"report: {page}" in stdout
        summary = json.loads((folder / "match.json").read_text())
        links = check_links(page)
        refined = [r["synth"] for r in summary["results"] if "refined_lsd" in r]
        assert len(refined) == 1 and len(summary["results"]) == 3
        expected = {"target.wav"} | {f"{r['synth']}.wav" for r in summary["results"]}
        assert set(links["audio"]) == expected | {f"{refined[0]}.refined.wav"}  # one-shot and refined
        assert set(links["img"]) == {a.replace(".wav", ".mel.png") for a in links["audio"]}
        text = page.read_text()
        for rank, row in enumerate(summary["results"], 1):
            synth = row["synth"]
            assert f"{rank}. {synth}" in text and f"{row['lsd']:.2f}" in text and f"{row['mrsd']:.2f}" in text
            assert {f"{synth}.faust.json", f"{synth}.preset.json"} <= set(links["a"])
        row = summary["results"][[r["synth"] for r in summary["results"]].index(refined[0])]
        assert f"{row['refined_lsd']:.2f}" in text and f"{row['search_renders']} renders" in text
        assert {f"{refined[0]}.refined.faust.json", f"{refined[0]}.refined.preset.json"} <= set(links["a"])
        assert not list(root.glob(f".{name}*"))  # written inside the match's atomic folder


@pytest.mark.slow
def test_index_links_every_report_of_the_folder(matches):
    root, stdout = matches
    index = root / "index.html"
    assert f"index of the reports: {index}" in stdout
    links = check_links(index)
    assert {unquote(a) for a in links["a"]} == {"low tone #1/report.html", "high/report.html"}
    assert {unquote(a) for a in links["audio"]} == {"low tone #1/target.wav", "high/target.wav"}
    assert "low%20tone%20%231/report.html" in links["a"]  # quoted: the # is part of the name, not an anchor


@pytest.mark.slow
def test_an_index_html_it_did_not_write_is_refused(tiny_data, tiny_models, tmp_path):
    sounds, out = tmp_path / "sounds", tmp_path / "site"
    sounds.mkdir()
    out.mkdir()
    sf.write(sounds / "a.wav", 0.3 * np.sin(np.arange(44100) / 20), 44100)
    (out / "index.html").write_text("<html>the user's own page</html>")
    args = ("-md", str(tiny_models), "-dd", str(tiny_data), "-l", "8", "--no-refine", "--note", "60")
    res = run_inference(*args, "--input", str(sounds), "--out", str(out))
    assert res.returncode == 2 and "was not written by run_inference" in res.stderr and "Traceback" not in res.stderr
    assert [p.name for p in out.iterdir()] == ["index.html"] and "own page" in (out / "index.html").read_text()


def test_choose_samples_takes_the_best_the_median_and_the_worst():
    from asp.report import choose_samples

    distances = {100 + i: float(d) for i, d in enumerate([5, 3, 9, 1, 7, 2, 8, 4, 10, 6, 0])}  # 0..10
    by_distance = {d: i for i, d in distances.items()}
    assert choose_samples(distances, 3) == {by_distance[0]: "best", by_distance[5]: "median", by_distance[10]: "worst"}
    five = choose_samples(distances, 5)
    assert sorted(distances[i] for i in five) == [0, 2, 5, 8, 10] and "median" in five.values()
    # 4 spread evenly: ranks 0, 3, 7, 10; the median (5) takes the place of the closest one
    assert sorted(distances[i] for i in choose_samples(distances, 4)) == [0, 5, 7, 10]
    assert choose_samples(distances, 50).keys() == distances.keys()
    assert choose_samples(distances, 0) == {} and choose_samples({1: float("nan")}, 3) == {}
    assert choose_samples(distances, 1) == {by_distance[0]: "best"}


def test_table_data_becomes_markdown_and_page_tables():
    from asp.report import Document, Section, Table, Text

    doc = Document("Title", [Text("Some text on two lines.")], [Section("lsd", [Table(["a", "b"], [["1", "2 ± 3"]])])])
    assert doc.markdown() == "# Title\n\nSome text on two lines.\n\n## lsd\n\n| a | b |\n|---|---|\n| 1 | 2 ± 3 |\n"
    assert doc.title == "Title" and [vars(b) for b in doc.intro] == [
        {"kind": "text", "text": "Some text on two lines."}
    ]
    assert [(s.heading, [vars(b) for b in s.blocks]) for s in doc.sections] == [
        ("lsd", [{"kind": "table", "head": ["a", "b"], "rows": [["1", "2 ± 3"]]}])
    ]


@pytest.mark.slow
def test_a_test_set_without_hpss_labels_gets_no_hpss_table_plot_or_filter(tiny_data, tiny_models, tmp_path):
    from asp.evaluation.evaluate import evaluate
    from asp.evaluation.run import write_report

    data = tmp_path / "data"  # the same sounds, as `generate.py --no-hpss` writes them: every label 0
    shutil.copytree(tiny_data, data)
    np.save(data / "train_hpss.npy", np.zeros_like(np.load(data / "train_hpss.npy")))
    out = tmp_path / "ev"
    (run_dir,) = tiny_models.glob("vae_multi_*")
    kw = dict(split="train", baselines=("mean",), max_samples=4, workers=1, progress=False)
    rows = evaluate(run_dir, data, out, **kw)
    page = write_report(out, rows, report_samples=1, title="no labels", progress=False)
    summary = (out / "summary.md").read_text()
    assert "no HPSS labels: the test set was generated with `--no-hpss`" in summary and "| method | 0 |" not in summary
    assert not (out / "lsd_per_hpss.png").exists() and (out / "lsd_boxplot.png").is_file()
    text = page.read_text()
    assert 'data-filter="hpss"' not in text and 'data-filter="synth"' in text
    assert ">HPSS</th>" not in text  # nor a column of zeros


@pytest.mark.slow
def test_evaluation_report_renders_a_bounded_number_of_samples(tiny_data, evaluation):
    from data.dataset import load_split
    from data.encoding import Codec
    from data_generation.render import Renderer
    from data_generation.spec import load_spec

    out, rows, page = evaluation
    assert page == out / "report" / "index.html"
    links = check_links(page)
    audio = sorted((out / "report" / "audio").glob("*.flac"))
    assert len(audio) == 3 * 4  # 3 samples x (target, multi, mean, nearest): the others are not rendered
    assert set(links["audio"]) == {f"audio/{p.name}" for p in audio}
    assert {"../lsd_boxplot.png", "../lsd_per_hpss.png"} <= set(links["img"]) and "../summary.md" in links["a"]
    lsd = {int(r["index"]): r["lsd"] for r in rows if r["method"] == "multi"}
    order = sorted(lsd, key=lsd.get)
    text = page.read_text()
    for index, case in ((order[0], "best"), (order[(len(order) - 1) // 2], "median"), (order[-1], "worst")):
        assert (
            f'id="listen-{index}" class="{case}"' in text and (out / f"report/audio/{index:05d}_target.flac").is_file()
        )
    assert text.count('<tr data-synth="') == len(lsd) == 8  # every sample in the full table
    assert text.index(f'id="listen-{order[0]}"') < text.index(f'id="listen-{order[-1]}"')  # best first without JS
    assert '<form class="filters" hidden>' in text  # shown by the script only
    # the target played is the sound evaluated: its true preset rendered again (16-bit)
    train = load_split(tiny_data, "train")
    index = order[0]
    spec = load_spec(str(train.synth[index]))
    truth = Renderer().render(spec, Codec(spec).decode(np.asarray(train.params[spec.name][index])), note=60)
    played, rate = sf.read(out / f"report/audio/{index:05d}_target.flac", dtype="float32")
    assert rate == 44100 and np.abs(played - truth).max() < 2 / 32768


@pytest.mark.slow
def test_evaluation_report_without_audio(evaluation, tmp_path):
    from asp.evaluation.run import write_report

    out, rows, _ = evaluation
    copy = tmp_path / "ev"
    shutil.copytree(out, copy)
    page = write_report(copy, rows, report_samples=0, title="no audio", progress=False)
    assert not list((copy / "report" / "audio").iterdir()) and "--report-samples 0" in page.read_text()
    check_links(page)
    assert not list(tmp_path.glob(".report*"))


@pytest.mark.slow
def test_a_damaged_presets_file_is_one_error_and_keeps_the_old_report(evaluation, tmp_path):
    from asp.errors import ASPError
    from asp.evaluation.run import write_report

    out, rows, _ = evaluation
    copy = tmp_path / "ev"
    shutil.copytree(out, copy)
    (copy / "presets.npz").write_bytes(b"PK not a zip file")
    before = (copy / "report" / "index.html").read_text()
    with pytest.raises(ASPError, match="presets file .* is damaged .* run the evaluation again"):
        write_report(copy, rows, report_samples=3, title="damaged", progress=False)
    assert (copy / "report" / "index.html").read_text() == before and len(list((copy / "report/audio").iterdir())) == 24


def test_evaluate_cli_refuses_negative_report_samples(tiny_data, tmp_path, monkeypatch, capsys):
    from experiments.evaluate import main

    argv = ["evaluate.py", "-d", str(tiny_data), "--out", str(tmp_path / "cli"), "--report-samples", "-1"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "--report-samples must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


# ---------------------------------------------------------------------------------------
# a real browser


def chromium(*, javascript: bool = True):
    """Debian's chromium, headless, driven by selenium; skips the test where either is missing."""
    missing = [p for p in CHROMIUM if not Path(p).is_file()]
    if missing:
        pytest.skip(
            f"no headless browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver; CI does)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (.venv/bin/pip install -r requirements.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    if not javascript:  # the page's scripts are off; the test's own (WebDriver) scripts still run
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(CHROMIUM[1]), options=options)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


LOAD_AUDIO = """
for (const a of document.querySelectorAll("audio")) {  // players with preload="none" load on demand
  if (a.readyState < 1 && !a.error) { a.preload = "metadata"; a.load(); }
}
"""
AUDIO = """
return Array.from(document.querySelectorAll("audio")).map(
  a => [a.getAttribute("src"), a.readyState, a.error ? a.error.code : null, a.duration]);
"""
IMAGES = "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"


def open_and_check(driver, page: Path, shot: Path) -> list:
    """Opens ``page`` from disk; asserts that every audio element loads its 5 s file and every
    image its picture; saves a screenshot of the whole page to ``shot``. Returns the players' srcs."""
    driver.get(page.resolve().as_uri())
    driver.execute_script(LOAD_AUDIO)
    deadline = time.monotonic() + 30
    while True:  # each player has its metadata (readyState 1+) or an error
        players = driver.execute_script(AUDIO)
        if all(ready >= 1 or error is not None for _, ready, error, _ in players) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert players, f"{page} has no audio players"
    for src, ready, error, duration in players:
        assert error is None and ready >= 1, f"{page.name}: audio {src} did not load (error {error})"
        assert duration == pytest.approx(5.0, abs=0.01), src
    images = driver.execute_script(IMAGES)
    assert images and all(done and width > 0 for _, done, width in images), [i for i in images if not i[2]]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height + 40, 6000))
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    driver.set_window_size(1280, 900)
    return [p[0] for p in players]


@pytest.mark.slow
def test_pages_load_every_player_and_image_in_a_browser(browser, matches, evaluation, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, _ = matches
    assert len(open_and_check(browser, root / "high" / "report.html", tmp_path / "match.png")) == 5
    assert len(open_and_check(browser, root / "index.html", tmp_path / "index.png")) == 2
    out, rows, page = evaluation
    assert len(open_and_check(browser, page, tmp_path / "evaluation.png")) == 3 * 4
    # the script: sorting by a column and filtering by synth
    table = browser.find_elements(By.CSS_SELECTOR, "table.samples")[1]
    column = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")].index("mean")
    table.find_elements(By.CSS_SELECTOR, "thead th button")[column].click()
    cells = [r.find_elements(By.TAG_NAME, "td")[column] for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    values = [float(c.get_attribute("data-value")) for c in cells]
    assert values == sorted(values) and len(values) == 8
    synth = rows[0]["synth"]
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter=synth]")).select_by_visible_text(synth)
    shown = [r for r in table.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]
    assert shown and all(r.get_attribute("data-synth") == synth for r in shown)
    assert len(shown) == sum(1 for r in rows if r["method"] == "multi" and r["synth"] == synth)


@pytest.mark.slow
def test_evaluation_page_without_javascript(evaluation, tmp_path):
    from selenium.webdriver.common.by import By

    driver = chromium(javascript=False)
    try:
        out, rows, page = evaluation
        assert len(open_and_check(driver, page, tmp_path / "no_script.png")) == 3 * 4  # players and images work
        assert not driver.find_element(By.CSS_SELECTOR, "form.filters").is_displayed()  # nothing that cannot work
        assert not driver.find_elements(By.CSS_SELECTOR, "th button")
        listen, every = driver.find_elements(By.CSS_SELECTOR, "table.samples")
        assert len(every.find_elements(By.CSS_SELECTOR, "tbody tr")) == 8
        first = listen.find_element(By.CSS_SELECTOR, "tbody tr")
        assert first.get_attribute("class") == "best" and first.is_displayed()  # the best first, as written
    finally:
        driver.quit()
