"""The HTML report in a real browser: headless Chromium (the system's, driven by Selenium)
at 1280 and 1400 pixels, on a 220-layer report: no horizontal scrollbar, passing rules folded,
filtering by verdict and name, sorting, and no console errors.

Skips, saying why, when Selenium, Chromium or its driver is missing (``.ci/run`` installs
them; by hand: ``apt-get install chromium chromium-driver`` and ``pip install selenium``).
"""

from __future__ import annotations

import shutil

import pytest

from jacverify import LayerCheck, ModelCheck
from jacverify.report import build_document, write_html

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Layers of the large report, and which of them do not pass.
LAYERS = 220
NOT_PASSING = {7: "fail", 40: "boundary", 99: "no rule", 150: "inconclusive", 201: "error"}


def _executables() -> tuple[str, str]:
    browser = next((path for path in map(shutil.which, BROWSERS) if path), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(
            name for name, path in (("Chromium", browser), ("chromedriver", driver))
            if path is None
        )
        pytest.skip(f"browser test: {missing} not found (apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    return browser, driver


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="browser test: selenium is not installed (pip install "
        "-e '.[test]')"
    )
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = _executables()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    yield session
    session.quit()


def _large_model() -> ModelCheck:
    layers = []
    for i in range(LAYERS):
        verdict = NOT_PASSING.get(i, "pass")
        layers.append(LayerCheck(
            verdict=verdict,
            reason=(f"{verdict}: along a random direction d (the rule differs from autograd most "
                    f"at x[0, {i}, 13, 31], x[0, {i}, 13, 30]) the rule's <g^T J, d> is "
                    "0.1234567 where finite_differences_float64_with_richardson_extrapolation "
                    "give 0.1234568 (tolerance 3.1e-07)") * (2 if i % 3 == 0 else 1),
            layer_name=f"mobilenetv2_1.00_224/block_{i}_expand_BN_with_a_long_suffix",
            layer_class="BatchNormalization" if i % 2 else "ScaledHardTanhActivationLayer",
            rule_class="BackwardBatchNormalization" if i % 2 else "BackwardScaledHardTanh",
            examples=50, error_to_tolerance=None if verdict in ("no rule", "error")
            else 10.0 ** ((i % 9) - 6), max_abs_error=1e-7 * (i + 1),
            max_rel_error=1e-6 * (i + 1), tolerance=3e-7, duration_s=0.5 + i / 100,
            seed=100 + i,
        ))
    return ModelCheck("mobilenetv2_1.00_224", layers, seed=99)


@pytest.fixture(scope="module")
def page(tmp_path_factory, model_check) -> str:
    document = build_document(models=[_large_model(), model_check], title="large report",
                              options={"examples": 50, "seed": 99})
    path = tmp_path_factory.mktemp("browser") / "report.html"
    write_html(document, path)
    return path.as_uri()


def _visible_rows(driver, table_id: str) -> list:
    return driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
        ".filter(r => r.offsetParent !== null).map(r => [r.dataset.verdict, r.dataset.names,"
        " r.cells[5].getAttribute('data-sort')]);", table_id)


@pytest.mark.parametrize("width", [1280, 1400])
def test_the_page_fits_the_window(driver, page, width):
    driver.set_window_size(width, 900)
    driver.get(page)
    sizes = driver.execute_script(
        "var d = document.documentElement; return [d.scrollWidth, d.clientWidth,"
        " Array.from(document.querySelectorAll('.tablewrap')).map(w => [w.scrollWidth,"
        " w.clientWidth])];")
    page_width, client_width, tables = sizes
    assert page_width <= client_width, f"horizontal scrollbar: {page_width} > {client_width}"
    for inner, outer in tables:  # the tables themselves fit: long text wraps in its cell
        assert inner <= outer + 1, (inner, outer)
    driver.set_window_size(1280, 900)


def test_passing_rules_are_folded_and_filters_work(driver, page):
    driver.get(page)
    from selenium.webdriver.common.by import By

    rows = _visible_rows(driver, "table-m1")
    assert sorted(v for v, _, _ in rows) == sorted(NOT_PASSING.values())
    bar = driver.find_element(By.CSS_SELECTOR, '.filters[data-table="table-m1"]')
    bar.find_element(By.CSS_SELECTOR, 'input[value="pass"]').click()
    assert len(_visible_rows(driver, "table-m1")) == LAYERS
    assert bar.find_element(By.CSS_SELECTOR, ".shown").text == f"showing {LAYERS} of {LAYERS}"
    search = bar.find_element(By.CSS_SELECTOR, ".name-filter")
    search.send_keys("block_17_")
    rows = _visible_rows(driver, "table-m1")
    assert [names.split()[0] for _, names, _ in rows] == [
        "mobilenetv2_1.00_224/block_17_expand_bn_with_a_long_suffix"
    ]
    search.clear()
    search.send_keys("backwardscaledhardtanh")  # class and rule names match too
    assert len(_visible_rows(driver, "table-m1")) == LAYERS // 2
    search.clear()
    bar.find_element(By.CSS_SELECTOR, 'input[value="fail"]').click()
    verdicts = {v for v, _, _ in _visible_rows(driver, "table-m1")}
    assert "fail" not in verdicts and "pass" in verdicts


def test_sorting_by_error(driver, page):
    driver.get(page)
    from selenium.webdriver.common.by import By

    bar = driver.find_element(By.CSS_SELECTOR, '.filters[data-table="table-m1"]')
    bar.find_element(By.CSS_SELECTOR, 'input[value="pass"]').click()
    header = driver.find_element(By.CSS_SELECTOR, "#table-m1 thead th:nth-child(6)")
    assert "err / tol" in header.text
    header.click()
    keys = [float(key) for _, _, key in _visible_rows(driver, "table-m1")]
    assert keys == sorted(keys) and len(keys) == LAYERS
    header.click()
    keys = [float(key) for _, _, key in _visible_rows(driver, "table-m1")]
    assert keys == sorted(keys, reverse=True)


def test_no_console_errors(driver, page):
    driver.get(page)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
