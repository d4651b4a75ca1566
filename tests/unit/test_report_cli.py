"""`pi-cluster check` input errors: exit 2 with a message naming what is wrong, never a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pi_cluster.cli.main import app

EXAMPLE = str(Path(__file__).resolve().parents[2] / "inventory" / "example")


def test_unknown_scenario_is_bad_input() -> None:
    r = CliRunner().invoke(app, ["check", "-i", EXAMPLE, "--only", "nodes,bogus"])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)  # a clean exit, no exception
    assert "unknown scenario(s) bogus" in r.output


def test_skipping_everything_is_bad_input() -> None:
    from pi_cluster.conformance.report import SCENARIOS

    r = CliRunner().invoke(app, ["check", "-i", EXAMPLE, "--skip", ",".join(SCENARIOS)])
    assert r.exit_code == 2 and "no scenario left" in r.output


def test_bad_inventory_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("k3s_cluster:\n  children:\n    server:\n      hosts: {}\n")
    r = CliRunner().invoke(app, ["check", "-i", str(tmp_path / "hosts.yml")])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)


def test_missing_extra_tests_dir_is_bad_input(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["check", "-i", EXAMPLE, "--extra-tests", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "not a directory" in r.output
