"""A Modbus TCP IO module on pymodbus's own server, wired to a behavioural door (SimDoor).

The door's contact appears on a discrete input (1 while open), its exit button on another (1
while pressed), and writing the lock relay coil unlocks (on) or locks (off) the simulated door.
A door whose lock is jammed answers the relay write with a Modbus exception (SERVER DEVICE
FAILURE, 4), as a module with a failed output does. The door does nothing by itself: scenarios
and tests drive it (`force`, `press_exit`, `hold_open`); nothing here speaks our messages, the
module knows only bits.
"""

from __future__ import annotations

import asyncio
import threading
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge import drivers as d
from simulators.devices import SimDoor
from simulators.engine import Engine, SimClock
from simulators.ports import free_port
from simulators.venues import Venue

CONTACT_INPUT = 0  # discrete input: 1 while the door is open
EXIT_INPUT = 1  # discrete input: 1 while the exit button is pressed
LOCK_COIL = 0  # coil: on = unlocked (a fail-secure strike's relay)
_BITS = 16  # addresses 0-15 of each table exist; others answer ILLEGAL DATA ADDRESS


class _QuietDoor(SimDoor):
    """A SimDoor without spontaneous swipes, forced or held doors: only what it is told."""

    def plan(self, now: object) -> None:
        pass


class IoModule:
    """One IO module with one door, serving Modbus TCP on 127.0.0.1:`port` (unit `unit_id`)."""

    def __init__(
        self,
        port: int = 0,
        *,
        unit_id: int = 1,
        door_id: str = "door-1",
        door: SimDoor | None = None,
    ) -> None:
        """`door`: the behavioural model to wire (a fleet's, which scenarios drive); without it a
        quiet door of its own on its own engine. Port 0: a free port."""
        self.port, self.unit_id = port or free_port(), unit_id
        self.engine: Engine | None = None
        if door is None:
            self.engine = Engine(SimClock(1.0))
            venue = Venue(site="sim", node="sim", secret="", kind="community_centre", capacity=10,
                          open_24h=True)  # fmt: skip
            door = _QuietDoor(door_id, venue, self.engine, seed=1, report_every_s=3600)
        self.door = door
        self.exit_pressed = False
        self.coils = [False] * _BITS
        self.writes: list[tuple[int, bool]] = []  # every relay write received, in order
        self.stalled = False  # connected but answering nothing (a hung module)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._exit_until = 0.0

    def driver_settings(self) -> dict[str, object]:
        """The `modbus` driver's site-file settings for this module."""
        return {
            "host": "127.0.0.1", "port": self.port, "unit_id": self.unit_id,
            "contact": {"table": "discrete_input", "address": CONTACT_INPUT},
            "exit_button": {"table": "discrete_input", "address": EXIT_INPUT},
            "lock": {"coil": LOCK_COIL, "on_means": "unlocked"},
        }  # fmt: skip

    # --- life -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.engine is not None:
            self.engine.start()
        self.door.start(self._wired)
        self.serve()

    def serve(self) -> None:
        """Start answering (again, after `halt`)."""
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="modbus-io", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the Modbus IO module did not start on port {self.port}")

    def halt(self) -> None:
        """Stop answering: the server closes its connections and listener (power off)."""
        if self._loop is not None and self._server is not None:
            closing = self._server.shutdown()  # type: ignore[no-untyped-call]
            asyncio.run_coroutine_threadsafe(closing, self._loop).result(10)
        if self._thread is not None:
            self._thread.join(10)
        self._server = None

    def stop(self) -> None:
        self.halt()
        self.door.stop()
        if self.engine is not None:
            self.engine.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        def block() -> list[SimData]:
            return [SimData(0, count=_BITS, values=False, datatype=DataType.BITS)]

        registers = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
        device = SimDevice(
            self.unit_id, simdata=(block(), block(), registers, list(registers)),
            action=self._action,
        )  # fmt: skip
        self._server = ModbusTcpServer([device], address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)
        self._ready.set()
        await self._server.serving  # until shutdown()

    # --- the wiring -------------------------------------------------------------------------------

    def inputs(self) -> list[bool]:
        bits = [False] * _BITS
        bits[CONTACT_INPUT] = self.door.is_open
        bits[EXIT_INPUT] = self.exit_pressed or time.monotonic() < self._exit_until
        return bits

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Every request passes here: reads see the door, writes move its lock."""
        while self.stalled or self.door.offline:  # hung, or the model's power is cut
            await asyncio.sleep(0.05)
        if values is None:
            bits = self.inputs() if function_code == 2 else self.coils
            registers[0] = sum(1 << i for i, bit in enumerate(bits) if bit)
            return None
        for i, value in enumerate(values):
            if address + i == LOCK_COIL:
                try:
                    self.door.unlock(None) if value else self.door.lock()
                except d.CommandFailed:
                    return ExcCodes.DEVICE_FAILURE
            if address + i < _BITS:
                self.coils[address + i] = bool(value)
                self.writes.append((address + i, bool(value)))
        return None

    def _wired(self, reading: d.Reading) -> None:
        """The model's own readings: a plain IO module reports none. A granted badge at the
        door's own reader releases the door through the module's exit input (the reader's
        door-release output wired to it), so the opening that follows is not forced."""
        if isinstance(reading, d.AccessSeen) and reading.granted:
            self._exit_until = time.monotonic() + 2.0

    # --- scenario hooks ---------------------------------------------------------------------------

    def press_exit(self, seconds: float = 1.0) -> None:
        """Someone presses the exit button, then opens the door to leave."""
        self.exit_pressed = True
        time.sleep(seconds)
        self.door.hold_open(5)
        self.exit_pressed = False
