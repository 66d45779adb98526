// A greeter plugin in JavaScript: it serves demo:greeter/greet and counts its
// calls in the host's store (hotslot:plugin/state), so the count survives a
// reload. Build: make plugins (componentize-js, installed by the Makefile).
import { get, set } from "hotslot:plugin/state@0.1.0";

const GREETING = "js: hello";

function calls() {
  const saved = get("calls");
  if (!saved) return 0;
  return Number(new DataView(saved.buffer, saved.byteOffset, 8).getBigUint64(0, true));
}

export const greet = {
  hello(name) {
    const count = calls() + 1;
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(count), true);
    set("calls", bytes);
    return `${GREETING}, ${name} (call ${count})`;
  },
};
