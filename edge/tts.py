"""Text-to-speech at the edge, for speakers that only play audio: espeak-ng, run as a command.

espeak-ng speaks Mandarin (voice `cmn`) and English (`en`) and writes a WAV file (16-bit mono
PCM, 22,050 Hz). The text goes to it on standard input, never on its command line, so no text
can pass for an option. The speaker's volume (0-100) becomes espeak-ng's amplitude (0-200, 100
its normal loudness at volume 50).
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from gateway.messages import SpeechLanguage

log = logging.getLogger(__name__)

COMMAND = "espeak-ng"
APT_PACKAGE = "espeak-ng"
VOICES = {SpeechLanguage.ZH_CN: "cmn", SpeechLanguage.EN: "en"}


class TtsError(Exception):
    """The text could not be spoken; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Speech:
    """A spoken text as a WAV file's bytes."""

    wav: bytes
    seconds: float
    voice: str


def amplitude(volume: int) -> int:
    """espeak-ng's amplitude (0-200) for a speaker volume (0-100)."""
    return max(0, min(200, round(volume * 2)))


def available(command: str = COMMAND) -> bool:
    """espeak-ng can be run on this machine."""
    return shutil.which(command) is not None


def speak(
    text: str,
    language: SpeechLanguage = SpeechLanguage.ZH_CN,
    *,
    volume: int = 50,
    words_per_minute: int = 160,
    command: str = COMMAND,
    timeout_s: float = 60.0,
) -> Speech:
    """`text` spoken in `language` at `volume`, as WAV; TtsError when it cannot be."""
    if not text.strip():
        raise TtsError("nothing to speak: the text is empty")
    program = shutil.which(command)
    if program is None:
        raise TtsError(
            f"text-to-speech needs {command}, which is not installed on this agent: install the"
            f" apt package {APT_PACKAGE} (sudo apt-get install {APT_PACKAGE})"
        )
    voice = VOICES[SpeechLanguage(language)]
    with tempfile.TemporaryDirectory(prefix="gridwatch-tts-") as folder:
        out = Path(folder) / "speech.wav"
        # -w writes a complete header (--stdout cannot seek back to fill in the sizes).
        args = [program, "-v", voice, "-a", str(amplitude(volume)), "-s", str(words_per_minute),
                "-b", "1", "-w", str(out), "--stdin"]  # fmt: skip
        try:
            done = subprocess.run(
                args, input=text.encode(), capture_output=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise TtsError(
                f"{command} took longer than {timeout_s:.0f} s to speak the text"
            ) from None
        except OSError as exc:
            raise TtsError(f"{command} could not be run: {exc}") from None
        if done.returncode != 0 or not out.exists():
            said = done.stderr.decode(errors="replace").strip()[:200]
            raise TtsError(f"{command} failed (exit {done.returncode}): {said or 'no message'}")
        wav = out.read_bytes()
    try:
        with wave.open(io.BytesIO(wav)) as w:
            seconds = w.getnframes() / w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise TtsError(f"{command} wrote no readable WAV: {exc}") from None
    log.debug("spoke text chars=%d voice=%s seconds=%.1f", len(text), voice, seconds)
    return Speech(wav, seconds, voice)
