"""A greeter plugin in Python: it serves demo:greeter/greet and counts its
calls in the host's store (hotslot:plugin/state), so the count survives a
reload. Build: make plugins (componentize-py, installed by the Makefile)."""

from wit_world import exports
from wit_world.imports import state

GREETING = "py: hello"


class Greet(exports.Greet):
    def hello(self, name: str) -> str:
        saved = state.get("calls")
        calls = (int.from_bytes(saved, "little") if saved else 0) + 1
        state.set("calls", calls.to_bytes(8, "little"))
        return f"{GREETING}, {name} (call {calls})"
