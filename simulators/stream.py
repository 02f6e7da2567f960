"""A synthetic scene as a live camera: Motion JPEG over HTTP (multipart/x-mixed-replace), as
many IP cameras serve it, so the edge agent reads it exactly as it would read a real camera.
The scene's clock starts when the server starts; every viewer sees the same moment."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from simulators.scenes import Scene

log = logging.getLogger(__name__)

_BOUNDARY = "gridwatchframe"


class SceneStream:
    def __init__(
        self, scene: Scene, *, host: str = "127.0.0.1", port: int = 0, loop: bool = True,
        quality: int = 85,
    ) -> None:  # fmt: skip
        self.scene, self.loop, self.quality = scene, loop, quality
        scene.background()  # rendered once here, not by two viewers at once
        self.started = 0.0  # the scene's clock starts with start()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/video.mjpg"

    def start(self) -> SceneStream:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"scene-{self.scene.name}")  # fmt: skip
        self._thread.start()
        log.info("serving scene %s at %s", self.scene.name, self.url)
        return self

    def stop(self) -> None:
        """Stop serving; viewers see their stream end."""
        self._closing.set()
        if self._thread is not None:  # shutdown() waits for serve_forever(): only if it runs
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def scene_time(self) -> float:
        return time.monotonic() - self.started

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                log.debug("scene stream: " + format, *args)

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/video.mjpg":
                    self.send_error(404, "the stream is at /video.mjpg")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={_BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                scene = stream.scene
                try:
                    while not stream._closing.is_set():
                        t = stream.scene_time()
                        index = int(t * scene.fps)
                        if index >= scene.frames():
                            if not stream.loop:
                                return
                            index %= scene.frames()
                        ok, jpeg = cv2.imencode(".jpg", scene.frame(index),
                                                [cv2.IMWRITE_JPEG_QUALITY, stream.quality])  # fmt: skip
                        if not ok:
                            return
                        data = jpeg.tobytes()
                        self.wfile.write(
                            f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(data)}\r\n\r\n".encode()
                            + data
                            + b"\r\n"
                        )
                        self.wfile.flush()
                        next_t = (int(t * scene.fps) + 1) / scene.fps
                        time.sleep(max(0.0, next_t - stream.scene_time()))
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler
