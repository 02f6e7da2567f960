"""`gridwatch bench rtsp`: OpenCV reading the RTSP camera simulator (simulators/rtsp.py).

For each scene rate and number of clients, it serves the 640x360 intrusion scene over RTSP
(RTP/JPEG, digest account), opens that many OpenCV captures at once (FFmpeg backend, interleaved
TCP, as the edge agent opens a camera), and reports the time to open, the frames each client
reads per second, and the CPU used by the whole process (the server's rendering, encoding and
sending, and the clients' decoding: one process, so the figure is the sum). OpenCV opens one
FFmpeg capture at a time in a process (a lock around the open), so several clients open one
after the other.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import cv2

from simulators import scenes
from simulators.rtsp import RtspServer

_OPEN = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 30000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 30000]


def measure(fps: float, clients: int, seconds: float) -> dict[str, Any]:
    """One run: `clients` captures of a scene served at `fps`, read for `seconds`."""
    scene = scenes.intrusion_scene(4)
    scene.fps = fps
    server = RtspServer(scene)
    url = server.start()
    opened: list[float] = []
    rates: list[float] = []  # frames read per second, per client
    lock = threading.Lock()
    start_reading = threading.Barrier(clients + 1)  # all open, then all read for `seconds`

    def client() -> None:
        began = time.perf_counter()
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, _OPEN)
        took = time.perf_counter() - began
        start_reading.wait()
        while True:  # drain what was buffered while it and the others opened
            began = time.perf_counter()
            if not cap.read()[0] or time.perf_counter() - began > 0.5 / fps:
                break
        n, first = 0, time.perf_counter()
        while time.perf_counter() < first + seconds:
            ok, _ = cap.read()
            if not ok:
                break
            n += 1
        rate = n / (time.perf_counter() - first)
        cap.release()
        with lock:
            opened.append(took)
            rates.append(rate)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    try:
        for t in threads:
            t.start()
        start_reading.wait()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for t in threads:
            t.join(seconds + 60)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        server.stop()
    return {
        "scene_fps": fps,
        "clients": clients,
        "open_s_max": round(max(opened), 2),
        "frames_per_s_per_client_min": round(min(rates), 1),
        "frames_per_s_per_client_mean": round(sum(rates) / len(rates), 1),
        "cpu_cores_used": round(cpu / wall, 2),
    }


def run(args: argparse.Namespace) -> int:
    rates = [float(r) for r in args.rates.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    if any(r <= 0 for r in rates) or any(c <= 0 for c in clients) or args.seconds <= 0:
        raise SystemExit("--rates, --clients and --seconds take positive numbers")
    results = [measure(r, c, args.seconds) for r in rates for c in clients]
    print(json.dumps({"size": "640x360", "results": results}, indent=2))
    return 0
