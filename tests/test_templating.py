"""The shared page machinery: one Jinja environment factory, one SVG plot helper."""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path

import jinja2
import numpy as np
import pytest

from pipeline.report.plots import figure_svg, mpl_text
from pipeline.report.templating import (
    TEMPLATE_DIR,
    counted,
    joined,
    make_environment,
    number,
    page_environment,
    percent,
)

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = '<script>alert("x")</script> & "quotes"'


def test_every_template_escapes_what_it_prints(tmp_path):
    # a ".html.j2" suffix is not one select_autoescape() knows: escaping must not hang on it
    (tmp_path / "page.html.j2").write_text("<p>{{ text }}</p>")
    for env in (make_environment(tmp_path), make_environment(tmp_path, strict=False)):
        out = env.get_template("page.html.j2").render(text=HOSTILE)
        assert "<script>" not in out and "&lt;script&gt;" in out and "&amp;" in out


def test_a_misspelt_field_fails_the_render_of_a_static_page(tmp_path):
    (tmp_path / "page.html.j2").write_text("{{ row.nmae }}")
    with pytest.raises(jinja2.UndefinedError):
        make_environment(tmp_path).get_template("page.html.j2").render(row={"name": "x"})
    lenient = make_environment(tmp_path, strict=False).get_template("page.html.j2")
    assert lenient.render(row={"name": "x"}) == ""


def test_the_shared_filters():
    assert number(0.125) == "0.12" and number(2, 0) == "2" and number(float("nan")) == "n/a"
    assert number(None) == "n/a" and percent(0.5) == "50%" and percent(None) == "n/a"
    assert joined(["a", "b<c>"]) == "a; b<c>" and joined(np.array([1, 2])) == "1; 2"
    assert joined("a; b") == "a; b" and joined(None) == "" and joined(float("nan")) == ""
    out = page_environment().from_string("{{ x|joined }}").render(x=["<b>", "c"])
    assert out == "&lt;b&gt;; c"


def test_a_count_takes_the_noun_its_number_needs():
    assert counted(1, "case") == "1 case" and counted(2, "case") == "2 cases"
    assert counted(0, "segment") == "0 segments" and counted(1.0, "segment") == "1 segment"
    assert counted("1", "case") == "1 case" and counted(3, "story", "stories") == "3 stories"
    assert counted(float("nan"), "case") == "n/a cases"
    page = page_environment().from_string('{{ n|counted("case") }}')
    assert page.render(n=1) == "1 case"


def test_packaging_ships_every_template():
    """A template missing from package-data renders in the source tree but not once
    installed: every file in the templates folder must match a package-data pattern."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["pipeline"]
    package = ROOT / "pipeline"
    files = [p for p in TEMPLATE_DIR.iterdir() if p.is_file()]
    assert files
    for f in files:
        rel = f.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} is not packaged"


def test_environments_are_made_in_one_place_only():
    """Every page escapes through the one factory: no module builds its own Environment."""
    made = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if path.name == "templating.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in ("Environment", "Template", "from_string"):
                    made.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert made == []


def test_mpl_text_is_one_plain_line():
    assert mpl_text("cost $5\tand\n$6") == r"cost \$5 and \$6"
    assert mpl_text("a\x00b\x1fc") == "a b c" and mpl_text(None) == ""
    assert mpl_text("abcdefghij", 5) == "abcd…"


def _bars(fig):
    ax = fig.add_subplot()
    ax.bar([0, 1], [1, 2])
    ax.set_title(mpl_text("a <b> & $x$"))


def test_figure_svg_is_inline_deterministic_and_escaped():
    one = str(figure_svg("bars", (3, 2), _bars, label='bars "1" <2>'))
    assert one == str(figure_svg("bars", (3, 2), _bars, label='bars "1" <2>'))
    assert one.startswith('<svg class="plot plot-bars" role="img" '
                          'aria-label="bars &#34;1&#34; &lt;2&gt;"')
    assert "<?xml" not in one and "DOCTYPE" not in one and "xmlns" not in one
    assert "<metadata>" not in one and "a &lt;b&gt; &amp;" in one
    ids = re.findall(r'\bid="([^"]+)"', one)
    assert ids and all(i.startswith("bars-") for i in ids)
    refs = re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', one)
    assert all((a or b).startswith("bars-") for a, b in refs)


def test_two_figures_on_one_page_share_no_id():
    a = str(figure_svg("left", (3, 2), _bars))
    b = str(figure_svg("right", (3, 2), _bars))
    assert not set(re.findall(r'\bid="([^"]+)"', a)) & set(re.findall(r'\bid="([^"]+)"', b))


def test_rc_overrides_a_key_and_nothing_leaks():
    import matplotlib

    before = matplotlib.rcParams["font.size"]
    small = str(figure_svg("bars", (3, 2), _bars, rc={"font.size": 5}))
    sizes = set(re.findall(r"font-size: ([\d.]+)px", small))
    assert "5" in sizes and "9" not in sizes  # tick labels at 5 px; the title keeps 10
    assert "9" in set(re.findall(r"font-size: ([\d.]+)px", str(figure_svg("bars", (3, 2),
                                                                           _bars))))
    assert matplotlib.rcParams["font.size"] == before
