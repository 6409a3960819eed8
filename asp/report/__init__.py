"""HTML reports to listen with: a page per match, an index of a folder's matches, a page per evaluation.

    write_match_report(folder, summary, mels)   report.html in a run_inference.py output folder
    write_index(root, entries, failures)       index.html linking the matches of an --input folder
    write_presets(path, ...), read_presets     every preset an evaluation rendered (presets.npz)
    evaluation_report(out, rows, ...)          <out>/report/index.html: tables, plots, and a few
                                               samples rendered again to listen to
    Document, Section, Text, Table             table data built once, written as markdown and shown as HTML

Pages are static files made from the Jinja2 templates in ``templates/``: relative links only, CSS
inline, no server and no CDN, so a report opens from disk on a machine without internet and can
be copied elsewhere with its folder. Audio players and images are plain HTML; the few lines of
JavaScript in the evaluation page only add sorting and filtering to tables that are already
sorted by distance without it.

An evaluation does not keep its audio: it keeps the presets it rendered (``presets.npz``), and the
report renders the target and every method's preset again for a bounded number of samples: the
best, the median and the worst by the reference method's LSD, and others spread between them.
"""

from asp.report.document import Document, Section, Table, Text
from asp.report.evaluation import choose_samples, evaluation_report
from asp.report.match import check_index, write_index, write_match_report
from asp.report.pages import PRESETS, REPORT_SAMPLES, hpss_bins, note_name, number, save_mel_png, write_audio
from asp.report.presets import Render, read_presets, write_presets

__all__ = [
    "PRESETS",
    "REPORT_SAMPLES",
    "Document",
    "Render",
    "Section",
    "Table",
    "Text",
    "check_index",
    "choose_samples",
    "evaluation_report",
    "hpss_bins",
    "note_name",
    "number",
    "read_presets",
    "save_mel_png",
    "write_audio",
    "write_index",
    "write_match_report",
    "write_presets",
]
