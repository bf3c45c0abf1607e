"""`make lab` works: a JupyterLab server lists the notebooks, offers the project's kernel, and
runs 00_quickstart top to bottom in a real (headless) chromium, showing its figure.

The server is started here on a free port of 127.0.0.1 with a token, its own runtime, config and
settings folders, and a copy of notebooks/ (JupyterLab autosaves: the tracked notebooks stay
clean); it is killed at the end. `--lab-screenshot PATH` saves what the browser shows at the end
(the README's results/figures/jupyterlab_00_quickstart.png).
"""
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from attnet.reproduce import NOTEBOOKS, project_root

SERVER_START_S = 120      # a cold start of jupyter-server and its extensions on a busy machine
RUN_ALL_S = 600           # 00_quickstart's kernel start, imports, synthetic data on first use


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it and the kernels it started), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def need(module: str) -> None:
    """Fail (not skip) without a dev-extra package: CI must not pass by skipping JupyterLab."""
    try:
        importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{module} is missing: it is in the dev extra (pip install -e '.[dev]'; `make test` installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base url, token, server log) of a running JupyterLab; stopped after the module."""
    need("jupyterlab")
    tmp = tmp_path_factory.mktemp("lab")
    shutil.copytree(project_root() / "notebooks", tmp / "notebooks")
    news = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))     # no "get notified about news?" toast over the notebook
    port, token = free_port(), "attnet-test-" + os.urandom(8).hex()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(project_root()), os.environ.get("PYTHONPATH")]))}
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp / 'notebooks'}",
         "--MappingKernelManager.default_kernel_name=python3"] + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}; its log:\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                get_json(f"{base}/api/status?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {base} within {SERVER_START_S} s; its log:\n"
                                f"{(tmp / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token, tmp / "server.log"
    finally:
        stop(server)
        log.close()


def test_lab_lists_the_notebooks_and_offers_the_project_kernel(lab):
    base, token, _ = lab
    listed = {item["name"] for item in get_json(f"{base}/api/contents?token={token}")["content"]}
    assert {f"{name}.ipynb" for name in NOTEBOOKS} <= listed, listed
    specs = get_json(f"{base}/api/kernelspecs?token={token}")
    assert specs["default"] == "python3"
    spec = specs["kernelspecs"]["python3"]["spec"]
    # the kernel `make` installs into the venv: this interpreter, named for the project
    assert spec["display_name"] == "attnet (venv)", spec
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve(), spec["argv"]


def chromium_driver():
    need("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("chromium and chromedriver are needed: `make system-deps` as root installs them "
                    "(Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def click_menu(browser, wait, menu: str, item: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    wait.until(ec.element_to_be_clickable(
        (By.XPATH, f"//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='{menu}']"))).click()
    wait.until(ec.element_to_be_clickable(
        (By.XPATH, f"//div[contains(@class, 'lm-Menu-itemLabel') and text()='{item}']"))).click()


def test_quickstart_runs_in_jupyterlab_and_shows_its_figure(lab, request):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, server_log = lab
    browser = chromium_driver()
    try:
        browser.get(f"{base}/lab/tree/00_quickstart.ipynb?token={token}")
        wait = WebDriverWait(browser, SERVER_START_S)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
        wait.until(lambda b: "attnet (venv)" in b.find_element(
            By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").text)
        # the status bar reads "attnet (venv) | Idle" once the kernel has started and connected
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'attnet (venv) | Idle')]")),
                   message="the kernel did not become idle")

        def started(b):
            return any(p.text.strip("[]: ") for p in b.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt"))
        for attempt in (1, 2):                       # a click can land while the menu bar is re-laid out
            click_menu(browser, wait, "Run", "Run All Cells")
            try:
                WebDriverWait(browser, 60).until(started)
                break
            except TimeoutException:
                if attempt == 2:
                    pytest.fail("Run > Run All Cells started no cell within 60 s, twice")
        try:
            WebDriverWait(browser, RUN_ALL_S).until(ec.presence_of_element_located(
                (By.CSS_SELECTOR, ".jp-OutputArea .jp-RenderedImage img")))
        except TimeoutException:
            errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-mime-type*='stderr']")]
            pytest.fail(f"no figure after {RUN_ALL_S} s of Run All Cells; cell errors: {errors[-3:]}; server log:\n"
                        f"{server_log.read_text()[-2000:]}")
        # every code cell ran (its prompt shows an execution count) and none failed
        def prompts(b):
            return [p.text.strip("[]: ") for p in b.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]
        wait.until(lambda b: prompts(b) and all(p.isdigit() for p in prompts(b)),
                   message=f"not every cell finished: prompts {prompts(browser)}")
        assert not browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type*='stderr']")
        image = browser.find_element(By.CSS_SELECTOR, ".jp-RenderedImage img")
        assert image.get_attribute("src").startswith("data:image/png") and image.size["width"] > 100
        screenshot = request.config.getoption("--lab-screenshot")
        if screenshot:
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
            time.sleep(1)                                # let the scroll and the layout settle
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
