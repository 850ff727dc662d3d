"""The docs keep up with the code: every setting is in the README's table, every endpoint documented."""

from __future__ import annotations

from pathlib import Path

from telltale.app.main import create_app
from telltale.config.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`TELLTALE_{n.upper()}`" not in readme]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_route_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    app = create_app(load_settings())
    paths = {r.path for r in app.routes if getattr(r, "include_in_schema", False)}
    missing = sorted(p for p in paths if f"`{p}" not in readme.replace("GET ", "").replace("POST ", ""))
    assert not missing, f"routes missing from README.md: {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make run") < readme.index("## Endpoints")
    assert readme.index("make test") < readme.index("## Endpoints")
