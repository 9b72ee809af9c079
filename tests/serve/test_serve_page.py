"""The search page in headless Chromium: the query on screen is the query that runs."""

import io

import pytest
from PIL import Image

from jointspace.report.browser import FLAGS, find_chromium
from jointspace.serve.local import running_server


@pytest.fixture(scope="module")
def page_at(served_app):
    """A function giving a fresh page on the running app, and the digits manifest."""
    from playwright.sync_api import sync_playwright

    app, manifest = served_app
    with running_server(app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=list(FLAGS))

        def new_page():
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(url)
            return page

        try:
            yield new_page, manifest
        finally:
            browser.close()


def digit_file(manifest, row=0) -> dict:
    path = manifest.resolve(manifest.split("test").rows[row]["image"])
    return {"name": path.name, "mimeType": "image/png", "buffer": path.read_bytes()}


def search(page) -> dict:
    """Submit the form; the service's JSON answer (it refuses a request with two queries)."""
    with page.expect_response("**/search") as got:
        page.click("button[type=submit]")
    return got.value.json()


def test_typing_text_drops_a_chosen_image(page_at):
    new_page, manifest = page_at
    page = new_page()
    page.set_input_files("#image", digit_file(manifest))
    page.wait_for_function("document.querySelector('#preview-media img')?.naturalWidth === 8")
    assert page.is_visible("#preview")
    page.fill("#text", "a handwritten seven")
    assert page.eval_on_selector("#image", "i => i.files.length") == 0
    assert page.is_hidden("#preview")
    answer = search(page)
    assert answer["query"] == "text"  # a 200 for one query: the image was not sent as well
    page.wait_for_selector(".hit")
    assert '"a handwritten seven" (text query)' in page.text_content("#status")


def test_choosing_an_image_clears_the_text_and_the_image_runs(page_at):
    new_page, manifest = page_at
    page = new_page()
    page.fill("#text", "a handwritten seven")
    page.set_input_files("#image", digit_file(manifest, row=3))
    assert page.input_value("#text") == ""
    answer = search(page)
    assert answer["query"] == "image"  # a 200: the old text was not sent as well
    # The image finds itself first (the index holds every digit image).
    row = manifest.split("test").rows[3]
    assert answer["results"][0]["metadata"]["image"] == row["image"]


def test_clear_button_empties_the_query_and_preview(page_at):
    new_page, manifest = page_at
    page = new_page()
    page.set_input_files("#image", digit_file(manifest))
    page.wait_for_selector("#preview:not([hidden])")
    page.click("#clear")
    assert page.eval_on_selector("#image", "i => i.files.length") == 0
    assert page.is_hidden("#preview") and page.input_value("#text") == ""
    answer = search(page)  # an empty query is refused, not answered with the old image
    assert "exactly one query" in answer["detail"]
    assert "exactly one query" in page.text_content("#status")


def test_result_cards_show_rank_and_the_items_caption(page_at):
    new_page, _ = page_at
    page = new_page()
    page.fill("#text", "the digit 3")
    answer = search(page)
    page.wait_for_selector(".hit")
    cards = page.eval_on_selector_all(
        ".hit",
        "cs => cs.map(c => ({rank: c.querySelector('.rank').textContent,"
        " name: c.querySelector('.name').textContent,"
        " href: c.querySelector('.name').getAttribute('href'),"
        " caption: c.querySelector('.score').textContent}))",
    )
    assert [c["rank"] for c in cards] == [f"#{i}" for i in range(1, 13)]
    # Each card is named by its item (caption, else id) and links to it, beside label and score.
    assert [c["name"] for c in cards] == [r["id"] for r in answer["results"]]
    assert [c["href"] for c in cards] == [f"/items/{r['id']}" for r in answer["results"]]
    first = answer["results"][0]
    assert cards[0]["caption"] == f"{first['metadata']['label']} · score {first['score']:.3f}"


@pytest.mark.parametrize(
    ("filter", "message"),
    [('colour == "red"', "colour"), ("label > 3", "use field == value")],
)
def test_a_bad_filter_shows_the_services_message(page_at, filter, message):
    new_page, _ = page_at
    page = new_page()
    page.fill("#text", "the digit 3")
    page.fill("#filter", filter)
    answer = search(page)
    assert message in answer["detail"]
    page.wait_for_selector("#status.error")
    shown = page.text_content("#status")
    assert shown == f"error: {answer['detail']}" and page.query_selector(".hit") is None


def test_a_validation_error_is_shown_readably(page_at):
    new_page, _ = page_at
    page = new_page()
    page.fill("#text", "three " * 200)
    search(page)
    page.wait_for_selector("#status.error")
    assert page.text_content("#status") == "error: text: String should have at most 1000 characters"


def test_docs_page_renders_offline(page_at):
    new_page, _ = page_at
    page = new_page()
    outside = []

    def local_only(route):
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:  # what a machine without network would see
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(page.url.rstrip("/") + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "ps => ps.map(p => p.textContent)")
    assert "/search" in [p.strip().replace("\u200b", "") for p in paths]
    assert outside == []


def test_preview_png_is_a_real_thumbnail(page_at):
    new_page, _ = page_at
    page = new_page()
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(buffer, format="PNG")
    page.set_input_files(
        "#image", {"name": "red.png", "mimeType": "image/png", "buffer": buffer.getvalue()}
    )
    page.wait_for_function("document.querySelector('#preview-media img')?.naturalWidth === 40")
    assert page.text_content("#preview-name") == "red.png"
