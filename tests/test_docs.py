"""Documentation that is generated from the code stays in step with it."""

from __future__ import annotations

from pathlib import Path

from gridwatch import configdoc

ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(configdoc.START), readme.index(configdoc.END) + len(configdoc.END)
    assert readme[start:end] == configdoc.render(), "regenerate: python -m gridwatch.configdoc"


def test_every_setting_has_a_description() -> None:
    table = configdoc.render().splitlines()[3:-1]
    assert table
    assert all(not row.endswith("|  |") for row in table), [r for r in table if r.endswith("|  |")]
