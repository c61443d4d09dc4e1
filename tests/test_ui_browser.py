"""The MLflow UI of our server, opened in a real headless browser, shows an experiment we created.

The link is the one our commands print (`experiment_ui_url`), which lands on the training view instead
of the 3.x GenAI default.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mlops_platform.settings import experiment_ui_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # The machine has no outside network: keep chromium from trying to phone home at start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium_path() -> str:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing in CI: .ci/run should have installed it")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


def test_ui_shows_the_experiment(
    sqlite_tracking_uri: str, fresh_experiment, chromium_path: str, tmp_path: Path
):
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    run = client.create_run(experiment_id, run_name="browser-visible-run")
    client.log_metric(run.info.run_id, "val_accuracy", 0.97)
    client.set_terminated(run.info.run_id)

    screenshot = tmp_path / "experiment.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(experiment_ui_url(sqlite_tracking_uri, experiment_id), wait_until="domcontentloaded")
            page.get_by_text(name).first.wait_for(timeout=60_000)
            page.get_by_text("browser-visible-run").first.wait_for(timeout=60_000)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
