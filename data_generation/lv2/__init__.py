"""LV2: the built-in Faust synths as LV2 plugins, and every match as an LV2 preset bundle.

Plugins. ``build_plugin`` compiles a Faust synth's ``.dsp`` (the file the toolkit renders) with
Debian's ``faust2lv2`` into ``<name>.lv2``: an 8-voice instrument (MIDI in, stereo out) at the URI
``urn:multi-task-asp:lv2/<name>``. Its Turtle is then rewritten from the spec: port symbols are the
spec's parameter names (stable when a parameter is added, unlike faust2lv2's ``<label>_<index>``),
categorical parameters are integer ports (with named scale points where the spec names its
classes), the spec's ranges and defaults are checked against the ports (a disagreement is an
error), and the bundle records the synth and its spec hash (``asp:specHash``, which covers the
``.dsp`` code), so that a plugin built from an older DSP is found. ``install_plugin`` copies a
bundle into ``~/.lv2`` (or the first ``LV2_PATH`` folder).

Presets. ``write_preset_bundle`` writes a preset as an LV2 preset bundle (``manifest.ttl`` and the
preset's ``.ttl``: ``lv2:appliesTo`` the plugin, one ``lv2:port [lv2:symbol; pset:value]`` per
parameter in the plugin's own units), for a built-in synth or an LV2 plugin (Calf Monosynth, whose
ports are read from its installed Turtle). ``read_preset_bundle`` reads one back.

Rendering. ``render_preset_bundles`` plays preset bundles through the installed plugins in
DawDreamer (which loads LV2 plugins by URI from ``~/.lv2``, ``/usr/local/lib/lv2`` and
``/usr/lib/lv2``, never from ``LV2_PATH``), optionally in a child process whose home folder holds
the plugins to test (``lv2_home``). A render through the plugin equals the toolkit's up to float
rounding (the two Faust compilers' code differs): LSD at most 0.0016 (va), 0.0002 (fm) and 0.0003
(modal) on the 20 random presets of ``tests/test_lv2.py``, 0.007 on other seeds; a different
preset is 1 or more. Two hosts' event timing is matched: the toolkit
drives a Faust synth's gate by automation, which DawDreamer applies at block starts, so the note
sounds from the first block start at or after ``note_start`` (sample 11264, not 11025, at the
default 512-sample blocks); faust2lv2's plugins apply MIDI at the start of the block that holds
it, so the note is sent inside that block.

Turtle is read with rdflib; nothing here needs lilv, but ``lv2info`` (Debian's lilv-utils) lists
what was built and written.

The package's modules, one job each: ``bundles`` (where bundles live, reading them), ``presets``
(preset values <-> port values, writing preset bundles), ``build`` (building, installing and
checking plugins), ``play`` (rendering through them). Their public names are importable from here.
"""

from __future__ import annotations

from data_generation.lv2.build import (
    PluginStatus,
    build_plugin,
    check_tools,
    install_lines,
    install_plugin,
    plugin_status,
    validate,
)
from data_generation.lv2.bundles import (
    APT_PACKAGES,
    ASP_NS,
    DOAP,
    INSTALL_HINT,
    LV2,
    PSET,
    RDF,
    RDFS,
    URI_PREFIX,
    VOICES,
    Plugin,
    Port,
    PresetBundle,
    class_name,
    dawdreamer_path,
    find_plugin,
    install_dir,
    plugin_uri,
    preset_bundle_name,
    read_plugin,
    read_preset_bundle,
    search_path,
)
from data_generation.lv2.play import compare_renders, render_preset_bundles
from data_generation.lv2.presets import (
    plugin_ports,
    port_value,
    preset_from_bundle,
    preset_port_values,
    write_match_bundle,
    write_preset_bundle,
)
