"""The page for people (`GET /`) in a real browser: Debian's Chromium, headless, driven by
Playwright, against the shared service on 127.0.0.1 (which asks for an API key).

An upload of sample.wav with diarization: the key asked once, the transcript with its two
speakers, a rename shown everywhere, a click on a word moving the player there, the srt download
equal to the API's with the names shown; live mode with Chromium's fake microphone playing
jfk.flac, the utterance's text checked. Plus the page's HTTP: no API key needed, its assets from
this service only, a Content-Security-Policy, 404 for what is not a page file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import httpx
import pytest

from tests.session import API_KEY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is missing: ./setup.sh --dev installs it (Debian's chromium)"
)


def test_the_page_and_its_assets_need_no_key_and_come_from_here(service):
    page = httpx.get(f"{service.base}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/page/") for s in sources), sources
    for name in ("app.js", "api.js", "transcript.js", "live.js", "pcm-worklet.js", "page.css"):
        asset = httpx.get(f"{service.base}/page/{name}", timeout=30)
        assert asset.status_code == 200 and asset.content, name
    assert httpx.get(f"{service.base}/page/app.js", timeout=30).headers["content-type"].startswith("text/javascript")
    for missing in ("/page/nothing.js", "/page/..%2Fpage.py", "/page/.hidden.js"):
        assert httpx.get(f"{service.base}{missing}", timeout=30).status_code == 404, missing
    # the API behind it still asks for the key
    assert httpx.get(f"{service.base}/v1/models", timeout=30).status_code == 401


def test_a_diarized_native_stream_sends_drafts_then_speakers(service, pyannote_sample):
    """What the page's progress reads: a draft per decoded chunk while the speakers are found."""
    import json

    headers = {"Authorization": f"Bearer {API_KEY}", "Cache-Control": "no-cache"}
    with open(pyannote_sample, "rb") as f:
        with httpx.stream("POST", f"{service.base}/v1/transcribe", files={"file": f},
                          data={"stream": "true", "diarize": "true"}, headers=headers, timeout=300) as r:  # fmt: skip
            assert r.status_code == 200
            lines = [json.loads(line) for line in r.iter_lines() if line]
    kinds = [x["type"] for x in lines]
    assert kinds[0] == "draft" and kinds[-1] == "done" and "segment" in kinds
    assert max(i for i, k in enumerate(kinds) if k == "draft") < kinds.index("segment"), "drafts come first"
    drafts = " ".join(x["text"] for x in lines if x["type"] == "draft")
    assert "New Jersey" in drafts and all(x["end"] > x["start"] for x in lines if x["type"] == "draft")
    assert {x["segment"]["speaker"] for x in lines if x["type"] == "segment"} == {"SPEAKER_00", "SPEAKER_01"}


@pytest.fixture(scope="module")
def chromium():
    """Playwright's Chromium launcher, once per module (its sync API runs one event loop)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright: ./setup.sh --dev installs it")
    if CHROMIUM is None:
        pytest.skip("Chromium is missing: ./setup.sh --dev installs it (Debian's chromium)")
    with playwright.sync_playwright() as p:
        yield p.chromium


@pytest.fixture(scope="module")
def browser(chromium):
    args = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
    browser = chromium.launch(executable_path=CHROMIUM, args=args)
    yield browser
    browser.close()


@needs_browser
def test_upload_diarize_rename_play_and_download(service, browser, pyannote_sample, tmp_path):
    page = browser.new_page(accept_downloads=True, viewport={"width": 1000, "height": 900})
    page.goto(f"{service.base}/")
    page.set_input_files("#file", str(pyannote_sample))
    assert page.is_checked("#diarize")
    page.click("#transcribe")
    # The service asks for a key: the page asks the person once, then the request goes through.
    page.wait_for_selector("#key-panel:not([hidden])", timeout=30_000)
    assert "API key" in page.text_content("#error")
    page.fill("#api-key", API_KEY)
    page.click("#key-form button")
    page.click("#transcribe")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Done')", timeout=180_000)
    assert page.is_hidden("#error")
    text = page.text_content("#transcript")
    assert "New Jersey" in text
    names = page.eval_on_selector_all("#speakers input", "inputs => inputs.map(i => i.value)")
    assert names == ["Speaker 1", "Speaker 2"], names

    # A rename shows everywhere that speaker does.
    page.fill("#speakers input[data-speaker='SPEAKER_00']", "Alice")
    labels = page.eval_on_selector_all(".who", "ws => ws.map(w => [w.dataset.speaker, w.textContent])")
    assert any(s == "SPEAKER_00" for s, _ in labels) and any(s == "SPEAKER_01" for s, _ in labels)
    assert all(t == "Alice:" for s, t in labels if s == "SPEAKER_00")
    assert all(t == "Speaker 2:" for s, t in labels if s == "SPEAKER_01")

    # A click on a word plays from its start, and that word is the one highlighted.
    word = page.locator(".word").nth(12)
    start = float(word.get_attribute("data-start"))
    word.click()
    page.wait_for_function("() => document.querySelector('.word.now') !== null", timeout=10_000)
    position = page.evaluate("() => document.getElementById('player').currentTime")
    assert start - 0.05 <= position <= start + 1.5, (start, position)
    page.evaluate("() => document.getElementById('player').pause()")
    if shot := os.environ.get("WXS_PAGE_SCREENSHOT"):  # the README's picture: docs/page.png
        page.screenshot(path=shot, full_page=True)

    # srt as the API renders it, with the name given.
    with page.expect_download(timeout=60_000) as download:
        page.click("#downloads button[data-format='srt']")
    saved = tmp_path / "page.srt"
    download.value.save_as(saved)
    with open(pyannote_sample, "rb") as f:
        api = httpx.post(f"{service.base}/v1/transcribe", files={"file": f},
                         data={"diarize": "true", "response_format": "srt"},
                         headers={"Authorization": f"Bearer {API_KEY}"}, timeout=300)  # fmt: skip
    assert api.status_code == 200 and "SPEAKER_00" in api.text
    # every speaker as the page shows it: the name given, and the other's "Speaker 2"
    assert saved.read_text() == api.text.replace("SPEAKER_00", "Alice").replace("SPEAKER_01", "Speaker 2")
    # A file that is not audio: a sentence naming the problem, and the page ready for the next.
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are meeting notes, not a recording")
    page.set_input_files("#file", str(not_audio))
    page.click("#transcribe")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    error = page.text_content("#error")
    assert error.startswith("notes.wav: This file is not audio") and page.is_enabled("#transcribe"), error
    assert page.text_content("#status") == ""
    page.close()


@pytest.fixture(scope="module")
def fake_microphone(speech_dir, tmp_path_factory):
    """jfk.flac as the WAV Chromium's fake capture device plays (it loops the file)."""
    path = tmp_path_factory.mktemp("mic") / "jfk.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(speech_dir / "jfk.flac"), "-ac", "1", "-ar", "48000",
         "-af", "apad=pad_dur=3", str(path)],
        check=True,
    )  # fmt: skip
    return path


@needs_browser
def test_live_microphone_appends_what_was_said(service, chromium, fake_microphone):
    browser = chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_microphone}",
        ],
    )
    try:
        context = browser.new_context(permissions=["microphone"])
        # the key as the key form keeps it (the upload test goes through that form)
        context.add_init_script(f"sessionStorage.setItem('whisperx-serve-api-key', '{API_KEY}')")
        page = context.new_page()
        page.goto(f"{service.base}/")
        page.click("#live-toggle")
        # the speech's pauses may cut it into several utterances: wait for its last words
        page.wait_for_function(
            "() => document.getElementById('utterances').textContent.toLowerCase().includes('country')",
            timeout=90_000,
        )
        said = " ".join(page.eval_on_selector_all("#utterances li", "items => items.map(i => i.textContent)"))
        said = said.lower()
        page.click("#live-toggle")
        assert page.is_hidden("#error"), page.text_content("#error")
    finally:
        browser.close()
    # JFK's "And so my fellow Americans, ask not what your country can do for you ..."
    assert "fellow" in said and "ask not" in said and "your country" in said, said
