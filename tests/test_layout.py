"""The layout stays readable: no module of the apps is longer than one sitting's
reading (issue 18: no app module over 400 lines; split by concern before then)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("kernel", "flashq_project", "queues", "security", "compliance")
MAX_LINES = 400


def _app_modules(root: Path) -> list[Path]:
    return sorted(
        path
        for app in APPS
        for path in (root / app).rglob("*.py")
        if "migrations" not in path.relative_to(root).parts
    )


def _too_long(root: Path) -> dict[str, int]:
    """Each app module over MAX_LINES, with its length in lines."""
    return {
        path.relative_to(root).as_posix(): lines
        for path in _app_modules(root)
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }


def test_no_app_module_is_over_400_lines() -> None:
    too_long = _too_long(ROOT)
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concern): " + ", ".join(
        f"{name} ({lines})" for name, lines in sorted(too_long.items())
    )


def test_it_looks_at_every_app_module_but_migrations() -> None:
    found = {path.relative_to(ROOT).as_posix() for path in _app_modules(ROOT)}
    assert {"kernel/limits.py", "flashq_project/urls.py", "queues/admin/jobs.py"} <= found
    assert {"security/admin.py", "compliance/audit/record.py"} <= found
    assert not any("/migrations/" in name for name in found)


def test_it_names_a_module_over_the_limit(tmp_path: Path) -> None:
    for name, lines in [
        ("queues/fits.py", MAX_LINES),
        ("queues/api/grown.py", MAX_LINES + 1),
        ("compliance/migrations/0001_initial.py", 2 * MAX_LINES),
        ("bench/long.py", 2 * MAX_LINES),
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n" * lines)
    assert _too_long(tmp_path) == {"queues/api/grown.py": MAX_LINES + 1}


def _layout_section(readme: str) -> str:
    start = readme.index("## How the code is laid out")
    return readme[start : readme.index("\n## ", start + 1)]


def _unlisted(root: Path, section: str) -> list[str]:
    """App modules the README's layout map does not name (empty ``__init__`` aside)."""
    return [
        name
        for path in _app_modules(root)
        if (name := path.relative_to(root).as_posix())
        and f"`{name}`" not in section
        and not (path.name == "__init__.py" and not path.read_text().strip())
    ]


def test_the_readme_map_names_every_app_module() -> None:
    section = _layout_section((ROOT / "README.md").read_text())
    unlisted = _unlisted(ROOT, section)
    assert not unlisted, "add these to README's 'How the code is laid out': " + ", ".join(unlisted)


def test_the_map_check_names_a_module_left_out(tmp_path: Path) -> None:
    for name, text in [
        ("queues/listed.py", "x = 1\n"),
        ("queues/new.py", "x = 1\n"),
        ("queues/__init__.py", ""),
        ("queues/services/__init__.py", '"""Re-exports."""\n'),
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    section = "## How the code is laid out\n- `queues/listed.py`: listed.\n"
    assert _unlisted(tmp_path, section) == ["queues/new.py", "queues/services/__init__.py"]
