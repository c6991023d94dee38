"""The web page at / of `halfserve serve`, in headless Chromium driven by Selenium.

Usage: check_web_page.py HALFSERVE_CLI REPO_ROOT

Serves the shipped Chinese model (models/punct-zh-int8.safetensors, copied into BASE/punct/1/), loads /, and
checks that the model list offers `punct`; that text pasted and sent with the button comes back exactly as
`halfserve punctuate` prints it, each token with its label and probability on hover; that a sentence typed into
the live box streams through the WebSocket and, once the pause ends it, reads exactly as `halfserve punctuate
--window W --stride S` with the stream's own settings. Takes a screenshot into the temporary folder, copied to
$HALFSERVE_SCREENSHOT_DIR when that is set. Exits non-zero listing every failed check.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from harness import Checks, fail, free_port  # noqa: E402

READY_TIMEOUT_SECONDS = 120
PAGE_TIMEOUT_SECONDS = 60
PASTED = "今天天气很好我们去公园玩吧公园里有很多人在散步还有小朋友在放风筝"
TYPED = "我们走了一会儿就坐在湖边的长椅上休息湖面上有几只鸭子游来游去远处的山在阳光下显得特别清楚"
LIVE_WINDOW, LIVE_STRIDE = "16", "8"  # a small window, so words commit while the sentence is still being typed
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def cli_punctuate(halfserve, model, text, *flags):
    reply = subprocess.run([halfserve, "punctuate", "--model", model, *flags], input=text + "\n", text=True,
                           capture_output=True, check=True, timeout=120)
    return reply.stdout.rstrip("\n")


def wait_until_ready(server, url, log_path):
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"halfserve serve exited with {server.returncode}:\n" + open(log_path).read())
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"the server was not ready within {READY_TIMEOUT_SECONDS} s:\n" + open(log_path).read())


def start_driver(work):
    """chromedriver on a port of ours, reached at 127.0.0.1: Selenium's own Service dials "localhost", which a CI
    chroot without /etc/hosts cannot resolve."""
    port = free_port()
    log = open(os.path.join(work, "chromedriver.log"), "w")
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            fail(f"chromedriver exited with {driver.returncode}:\n" + open(log.name).read())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2):
                return driver, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    driver.kill()
    fail("chromedriver did not answer within 30 s:\n" + open(log.name).read())


def start_browser(driver_url, profile):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Inside a CI chroot as root: no user namespaces for the sandbox, a small /dev/shm, no display, no GPU, and no
    # /etc/hosts, so chromedriver talks to Chromium over a pipe rather than through "localhost".
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--remote-debugging-pipe",
                 "--window-size=1100,1400", "--no-first-run", "--disable-extensions", "--lang=en-US",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Remote(command_executor=driver_url, options=options)


def main():
    halfserve, repo = sys.argv[1], sys.argv[2]
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="halfserve-web-") as work:
        model = os.path.join(work, "base", "punct", "1", "model.safetensors")
        os.makedirs(os.path.dirname(model))
        shutil.copyfile(os.path.join(repo, "models", "punct-zh-int8.safetensors"), model)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = os.path.join(work, "serve.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([halfserve, "serve", "--port", "0", "--rest_api_port", str(port),
                                       "--rest_api_host", "127.0.0.1", "--model_name", "punct",
                                       "--model_base_path", os.path.join(work, "base", "punct"),
                                       "--file_system_poll_wait_seconds", "0", "--enable_batching"],
                                      stdout=log, stderr=subprocess.STDOUT)
        browser = driver = None
        try:
            wait_until_ready(server, url, log_path)
            driver, driver_url = start_driver(work)
            browser = start_browser(driver_url, os.path.join(work, "profile"))
            wait = WebDriverWait(browser, PAGE_TIMEOUT_SECONDS)
            browser.get(url + "/")
            checks.expect("page title", browser.title, "halfserve · punctuation")

            # The model list comes from GET /v1/models.
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#version option"))
            models = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#model option")]
            checks.expect("models offered", models, ["punct"])
            precisions = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#precision option")]
            checks.expect("precisions offered", precisions, ["int8"])
            checks.require("int8" in browser.find_element(By.ID, "engine").text,
                           "the engine line names the precision: " + browser.find_element(By.ID, "engine").text)

            # Pasted text through :punctuate.
            browser.find_element(By.ID, "paste-text").send_keys(PASTED)
            browser.find_element(By.ID, "punctuate").click()
            result = browser.find_element(By.ID, "paste-result")
            wait.until(lambda b: result.get_attribute("data-text"))
            expected = cli_punctuate(halfserve, model, PASTED)
            checks.expect("pasted text punctuated", result.get_attribute("data-text"), expected)
            checks.expect("pasted result as shown", result.text, expected)
            tokens = result.find_elements(By.CSS_SELECTOR, ".token")
            checks.expect("tokens with hover titles", len(tokens), len(PASTED))  # one token per ideograph here
            titles = [t.get_attribute("title") for t in tokens]
            checks.require(all("probability" in title and "%" in title for title in titles),
                           f"every token's title gives its label and probability: {titles[:3]}")
            checks.require(any("adds" in title for title in titles), "some token's label adds a mark")
            checks.expect("error line after pasting", browser.find_element(By.ID, "error").text, "")

            # Typed text through the :stream WebSocket, a few characters at a time as a person (or ASR) sends them.
            browser.find_element(By.CSS_SELECTOR, "details summary").click()
            browser.find_element(By.ID, "live-window").send_keys(LIVE_WINDOW)
            browser.find_element(By.ID, "live-stride").send_keys(LIVE_STRIDE)
            live = browser.find_element(By.ID, "live-input")
            live.click()
            for at in range(0, len(TYPED), 4):
                live.send_keys(TYPED[at:at + 4])
                time.sleep(0.15)
            status = browser.find_element(By.ID, "live-status")
            pending = browser.find_element(By.ID, "live-pending")
            live_result = browser.find_element(By.ID, "live-result")
            # Before the pause ends the text, the words with enough text after them are already there.
            committed_while_typing = live_result.get_attribute("data-text") or ""
            if pending.get_attribute("data-final") != "true":
                checks.require(len(committed_while_typing) >= len(TYPED) // 2,
                               f"words commit while typing goes on: {committed_while_typing!r}")
            try:
                wait.until(lambda b: pending.get_attribute("data-final") == "true")
            except TimeoutException:
                checks.require(False, "the pause never ended the live text: " + status.text + " / " +
                               browser.find_element(By.ID, "error").text)
            window, stride = status.get_attribute("data-window"), status.get_attribute("data-stride")
            checks.expect("the stream's window and stride", (window, stride), (LIVE_WINDOW, LIVE_STRIDE))
            if window and stride:
                expected = cli_punctuate(halfserve, model, TYPED, "--window", window, "--stride", stride)
                checks.expect("typed text committed", live_result.get_attribute("data-text"), expected)
                checks.expect("typed result as shown", live_result.text, expected)
            words = live_result.find_elements(By.CSS_SELECTOR, ".token")
            checks.require(words and all("probability" in w.get_attribute("title") for w in words),
                           "committed words carry their label and probability")
            checks.expect("pending after the pause", pending.get_attribute("data-pending-bytes"), "0")
            checks.expect("error line after typing", browser.find_element(By.ID, "error").text, "")
            fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            checks.require(fetched and all(name.startswith(url + "/") for name in fetched),
                           f"the page fetched from this server only: {fetched}")

            screenshot = os.path.join(work, "web-page.png")
            checks.require(browser.save_screenshot(screenshot), "the screenshot was saved")
            checks.require(os.path.getsize(screenshot) > 10000, "the screenshot is an image of the page")
            keep = os.environ.get("HALFSERVE_SCREENSHOT_DIR")
            if keep:
                os.makedirs(keep, exist_ok=True)
                partial = os.path.join(keep, ".web-page.png.tmp")
                shutil.copyfile(screenshot, partial)
                os.replace(partial, os.path.join(keep, "web-page.png"))
                print("screenshot:", os.path.join(keep, "web-page.png"))
        finally:
            if browser is not None:
                browser.quit()
            if driver is not None:
                driver.terminate()
                driver.wait(timeout=30)
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                code = "killed after 60 s"
            checks.expect("serve's exit after SIGTERM", code, 0)
    checks.finish()


if __name__ == "__main__":
    main()
